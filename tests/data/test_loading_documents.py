"""Documents as users hand them over, made here as real files: text files from Windows editors, phone photos,
multi-page scans and PDFs, in each input format (JSONL, parquet, sidecar folder)."""

import io
import json
import unicodedata

import datasets
import numpy as np
from PIL import Image

from dharma_train.data.loading import load_source

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
