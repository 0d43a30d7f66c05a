"""Born-digital PDFs to silver training pages: every page written or skipped with its reason, and the loader counts
the answers as unverified."""

import json

import pytest
from PIL import Image

from dharma_train.data.__main__ import main
from dharma_train.data.loading import load_source
from dharma_train.data.pages import load_pages
from dharma_train.data.pdf_text import Bands
from dharma_train.data.text_layer_pages import REPORT_FILE, text_layer_pages
from dharma_train.errors import DataError
from tests.data.documents import Picture, Text, encrypt_pdf, make_pdf


def _folder(tmp_path):
    folder = tmp_path / "pdfs"
    (folder / "2024").mkdir(parents=True)
    (folder / "2024" / "gazette.pdf").write_bytes(make_pdf([
        [Text("DIÁRIO OFICIAL", 200, 810), Text("Art. 1º Fica aprovado.", 72, 700), Text("Página 1", 280, 20)],
        [Picture(0, 0, 595, 842)],
        [Text("Art. 2º Revoga-se.", 72, 700), Text("sob a imagem", 72, 600, invisible=True)],
        [Text("Art. 3º Esta lei entra em vigor.", 72, 700)],
    ]))
    (folder / "blank.pdf").write_bytes(make_pdf([[]]))
    (folder / "locked.pdf").write_bytes(encrypt_pdf(make_pdf([[Text("segredo", 72, 700)]])))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n%%EOF")
    return folder


def test_every_page_is_written_or_skipped_with_its_reason(tmp_path):
    pages, report = text_layer_pages(_folder(tmp_path), tmp_path / "silver", dpi=72, family="legal")
    assert [(p.id, p.source_page, p.answer_source, p.family) for p in pages] == [
        ("2024/gazette.1", 1, "pdf_text_layer", "legal"), ("2024/gazette.4", 4, "pdf_text_layer", "legal")]
    first = pages.pages[0].answer
    assert (first.header, first.text, first.footer) == ("DIÁRIO OFICIAL", "Art. 1º Fica aprovado.", "Página 1")
    assert (report.rows, report.used, report.skipped) == (7, 2, 5)
    assert report.skips == {"image_only": 1, "invisible_text": 1, "empty_text_layer": 1, "encrypted_pdf": 1,
                            "corrupt_pdf": 1}
    assert report.unverified == {"pdf_text_layer": 2}
    with Image.open(pages.pages[0].image) as image:
        assert image.size == (595, 842)
    saved = json.loads((tmp_path / "silver" / REPORT_FILE).read_text())
    assert saved["sources"][0]["unverified"] == {"pdf_text_layer": 2} and saved["bands"]["header"] == 0.08
    assert "silver data" in saved["reasons"]["unverified"]["pdf_text_layer"]


def test_the_folder_trains_through_the_loader_which_counts_unverified_answers(tmp_path):
    text_layer_pages(_folder(tmp_path), tmp_path / "silver", dpi=72)
    assert [p.answer_source for p in load_pages(tmp_path / "silver")] == ["pdf_text_layer"] * 2
    loaded = load_source(tmp_path / "silver", tmp_path / "images")
    assert loaded.report.format == "pages" and loaded.report.skipped == 0
    assert loaded.report.unverified == {"pdf_text_layer": 2}
    assert [p.answer_source for p in loaded.pages] == ["pdf_text_layer"] * 2
    assert "unverified answers: pdf_text_layer 2" in loaded.report.summary_line()


def test_no_usable_page_is_one_error(tmp_path):
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "scan.pdf").write_bytes(make_pdf([[Picture(0, 0, 595, 842)]]))
    with pytest.raises(DataError, match=r"no page with a usable text layer \(1 rows: 0 used .* image_only 1\)"):
        text_layer_pages(tmp_path / "scans", tmp_path / "out", bands=Bands())
    with pytest.raises(DataError, match="no .pdf files in the folder"):
        text_layer_pages(tmp_path / "out", tmp_path / "out2")


def test_the_command_says_what_the_pages_are_good_for(tmp_path, capsys):
    assert main(["pdf-text", str(_folder(tmp_path)), "--output-dir", str(tmp_path / "silver"), "--dpi", "72",
                 "--header-band", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "7 rows: 2 used (0 fixed), 5 skipped" in out and "unverified answers: pdf_text_layer 2" in out
    assert "silver data, unverified" in out and "evaluate on pages a person transcribed" in out
    assert json.loads((tmp_path / "silver" / REPORT_FILE).read_text())["bands"]["header"] == 0.1
    assert main(["pdf-text", str(tmp_path / "none"), "--output-dir", str(tmp_path / "x")]) == 2
    assert "is neither a folder nor a .pdf file" in capsys.readouterr().err
    assert main(["pdf-text", str(tmp_path), "--output-dir", str(tmp_path / "y"), "--margin-band", "0.6"]) == 2
    assert "the margin band must be a share of the page" in capsys.readouterr().err
