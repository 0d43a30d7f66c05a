"""Documents as users hand them over, made here as real files: text files from Windows editors, phone photos,
multi-page scans and PDFs, in each input format (JSONL, parquet, sidecar folder)."""

import io
import json
import unicodedata

import datasets
import numpy as np
import pytest
from PIL import Image

from dharma_train.data.loading import load_page_set, load_source
from dharma_train.data.pages import load_pages
from tests.data.documents import Text, encrypt_pdf, make_pdf, page_image, sideways_photo, two_frame_tiff

NFD = unicodedata.normalize("NFD", "Publicação")
CP1252_TEXT = "Publicação “oficial” – 3º"


def _png(seed: int, size=(120, 160)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_sidecar_text_files_from_windows_editors(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for index in range(4):
        (folder / f"p{index}.png").write_bytes(_png(index))
    (folder / "p0.txt").write_bytes(b"\xef\xbb\xbfLinha um\r\nLinha dois\r\n")  # Notepad: BOM and CRLF
    (folder / "p1.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "corpo"}).encode() + b"\r\n")
    (folder / "p2.txt").write_text(NFD, encoding="utf-8")
    (folder / "p3.txt").write_bytes(CP1252_TEXT.encode("cp1252"))
    loaded = load_source(folder, tmp_path / "images")
    pages = {page.id: page.answer.text for page in loaded.pages}
    assert pages == {"p0": "Linha um\nLinha dois", "p1": "corpo", "p2": "Publicação"}
    assert loaded.report.fixes == {"removed_bom": 2, "normalized_newlines": 1, "normalized_unicode": 1}
    assert loaded.report.fixed == 3 and loaded.report.skips == {"unreadable_text": 1}
    detail = loaded.report.examples["unreadable_text"][0]["detail"]
    assert "p3.txt is not UTF-8" in detail and "most likely Windows-1252" in detail
    assert "Publicação “oficial” – 3º" in detail and "iconv -f WINDOWS-1252 -t UTF-8" in detail


def test_jsonl_from_a_windows_editor(tmp_path):
    (tmp_path / "a.png").write_bytes(_png(0))
    (tmp_path / "b.png").write_bytes(_png(1))
    lines = [json.dumps({"id": "a", "image": "a.png", "answer": {"header": "Cabeçalho\r\n", "text": NFD}},
                        ensure_ascii=False).encode(),
             json.dumps({"id": "b", "image": "b.png", "text": CP1252_TEXT}, ensure_ascii=False).encode("cp1252")]
    (tmp_path / "rows.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n")
    loaded = load_source(tmp_path / "rows.jsonl", tmp_path / "images")
    assert [(p.id, p.answer.header, p.answer.text) for p in loaded.pages] == [("a", "Cabeçalho\n", "Publicação")]
    assert loaded.report.fixes == {"removed_bom": 1, "normalized_newlines": 1, "normalized_unicode": 1}
    assert loaded.report.fixed == 1 and loaded.report.skips == {"unreadable_text": 1}
    assert "most likely Windows-1252" in loaded.report.examples["unreadable_text"][0]["detail"]


def test_parquet_answers_with_bom_crlf_and_decomposed_accents(tmp_path):
    rows = [{"id": 0, "image": _png(0), "assistant": "\ufeff" + json.dumps({"text": "um\r\ndois"}),
             "assistant_without_json": None},
            {"id": 1, "image": _png(1), "assistant": None, "assistant_without_json": NFD},
            {"id": 2, "image": _png(2), "assistant": json.dumps({"text": "limpo"}), "assistant_without_json": None}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "bench.parquet"))
    loaded = load_source(tmp_path / "bench.parquet", tmp_path / "images")
    assert [p.answer.text for p in loaded.pages] == ["um\ndois", "Publicação", "limpo"]
    assert loaded.report.fixes == {"removed_bom": 1, "normalized_newlines": 1, "normalized_unicode": 1}
    assert (loaded.report.used, loaded.report.fixed) == (3, 2)


def _documents() -> list[tuple[str, str, bytes, list[tuple[int | None, str]]]]:
    """(id, file name, bytes, [(page, answer)]) for every kind of document a user hands over."""
    photo, _ = sideways_photo()
    gazette = make_pdf([[Text("DIÁRIO OFICIAL", 200, 800), Text("Art. 1º Fica aprovado.", 72, 700)],
                        [Text("Art. 2º Revogam-se as disposições em contrário.", 72, 700)]])
    return [
        ("photo", "photo.jpg", photo, [(None, "foto de celular")]),
        ("scan", "scan.tif", two_frame_tiff(seed=10), [(1, "página um"), (2, "página dois")]),
        ("whole", "whole.tif", two_frame_tiff(seed=20), [(None, "as duas páginas juntas")]),
        ("gazette", "gazette.pdf", gazette, [(1, "DIÁRIO OFICIAL\nArt. 1º Fica aprovado."),
                                             (2, "Art. 2º Revogam-se as disposições em contrário.")]),
        ("single", "single.pdf", make_pdf([[Text("Certidão", 72, 700)]]), [(None, "Certidão")]),
        ("broken", "broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog", [(None, "quebrado")]),
        ("locked", "locked.pdf", encrypt_pdf(gazette), [(1, "trancado")]),
    ]


def _write(format: str, folder) -> str:
    """The documents in one input format: a JSONL naming files, a parquet holding bytes, or a sidecar folder."""
    folder.mkdir()
    rows = []
    for name, file, data, answers in _documents():
        for page, answer in answers:
            row_id = name if page is None else f"{name}.{page}"
            rows.append({"id": row_id, "page": page, "text": answer, "file": file, "data": data})
    if format == "sidecar":
        for name, file, data, answers in _documents():
            (folder / file).write_bytes(data)
            for page, answer in answers:
                (folder / f"{name if page is None else f'{name}.{page}'}.txt").write_text(answer)
        return str(folder)
    if format == "jsonl":
        for name, file, data, _ in _documents():
            (folder / file).write_bytes(data)
        lines = [json.dumps({"id": r["id"], "image": r["file"], "page": r["page"], "text": r["text"]}) for r in rows]
        (folder / "rows.jsonl").write_text("\n".join(lines))
        return str(folder / "rows.jsonl")
    table = [{"id": r["id"], "image": r["data"], "page": r["page"], "assistant_without_json": r["text"]} for r in rows]
    datasets.Dataset.from_list(table).to_parquet(str(folder / "rows.parquet"))
    return str(folder / "rows.parquet")


@pytest.mark.parametrize("format", ["jsonl", "parquet", "sidecar"])
def test_photos_multi_page_scans_and_pdfs_in_every_format(tmp_path, format):
    loaded = load_source(_write(format, tmp_path / "source"), tmp_path / "images", pdf_dpi=72)
    report = loaded.report
    assert report.format == format
    pages = {page.id: page for page in loaded.pages}
    assert sorted(pages) == ["gazette.1", "gazette.2", "photo", "scan.1", "scan.2", "single"]
    assert (report.rows, report.used, report.fixed, report.skipped) == (9, 6, 1, 3)
    assert report.fixes == {"rotated_exif": 1}
    assert report.skips == {"multi_page": 1, "corrupt_pdf": 1, "encrypted_pdf": 1}
    assert [pages[key].source_page for key in ("scan.1", "scan.2", "gazette.1", "gazette.2", "single", "photo")] == \
           [1, 2, 1, 2, 1, None]
    assert pages["gazette.2"].answer.text == "Art. 2º Revogam-se as disposições em contrário."
    with Image.open(pages["photo"].image) as photo, Image.open(pages["gazette.1"].image) as rendered:
        assert photo.size == (90, 120), "stored upright"
        assert rendered.size == (595, 842) and rendered.format == "PNG"
    with Image.open(pages["scan.2"].image) as frame:
        assert np.array_equal(np.asarray(frame), np.asarray(page_image(11)))
    assert "encrypted" not in str(report.examples["corrupt_pdf"])
    assert "qpdf --decrypt" in report.examples["encrypted_pdf"][0]["detail"]
    assert "has 2 pages" in report.examples["multi_page"][0]["detail"]


def test_the_page_number_survives_a_saved_page_folder(tmp_path):
    source = _write("jsonl", tmp_path / "source")
    page_set = load_page_set(source, tmp_path / "eval", pdf_dpi=72)
    again = load_pages(tmp_path / "eval")
    assert [(p.id, p.source_page) for p in again] == [(p.id, p.source_page) for p in page_set]
    reloaded = load_source(tmp_path / "eval", tmp_path / "images")
    assert [(p.id, p.source_page) for p in reloaded.pages] == [(p.id, p.source_page) for p in page_set]
    assert reloaded.report.skipped == 0 and "source_page" not in reloaded.report.ignored_columns


def test_sidecar_pages_without_an_answer_and_answers_for_the_whole_file(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "doc.pdf").write_bytes(make_pdf([[Text(f"página {n}", 72, 700)] for n in (1, 2, 3)]))
    (folder / "doc.1.txt").write_text("página 1")
    (folder / "doc.3.json").write_text(json.dumps({"text": "página 3"}))
    (folder / "doc.4.txt").write_text("não existe")
    (folder / "doc.txt").write_text("o documento inteiro")
    (folder / "other.2.txt").write_text("de um arquivo que não existe")
    loaded = load_source(folder, tmp_path / "images", pdf_dpi=72)
    assert [(p.id, p.source_page, p.task) for p in loaded.pages] == [("doc.1", 1, "plain"), ("doc.3", 3, "structured")]
    skipped = {row["row"].removeprefix(str(folder) + "/"): row["reason"] for row in loaded.report.skipped_rows}
    assert skipped == {"doc.pdf page 2": "missing_field", "doc.pdf page 4": "invalid_value", "doc.txt": "multi_page",
                       "other.2.txt": "missing_field"}
    details = {example["row"]: example["detail"] for reason in loaded.report.examples
               for example in loaded.report.examples[reason]}
    assert "write doc.2.txt or doc.2.json beside it" in details[f"{folder}/doc.pdf page 2"]
    assert "page 4 does not exist: the file has 3 page(s)" in details[f"{folder}/doc.pdf page 4"]
