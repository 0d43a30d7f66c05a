import json

import pytest
from PIL import Image

from dharma_train.data.pages import Page, PageSet, load_pages
from dharma_train.data.schema import PageAnswer
from dharma_train.errors import DataError


def _folder(tmp_path, rows, make_images=True):
    (tmp_path / "images").mkdir(exist_ok=True)
    if make_images:
        Image.new("RGB", (32, 32), "white").save(tmp_path / "images" / "a.png")
    (tmp_path / "pages.jsonl").write_text("\n".join(json.dumps(r) if isinstance(r, dict) else r for r in rows))
    return tmp_path


def test_round_trip_through_save_and_load(tmp_path):
    Image.new("RGB", (32, 32), "white").save(tmp_path / "p.png")
    original = PageSet(tmp_path, [Page("p1", tmp_path / "p.png", PageAnswer(text="olá"), "legal", "plain")])
    original.save()
    loaded = load_pages(tmp_path)
    assert loaded.pages == original.pages


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_pages(tmp_path / "nope")


def test_bad_json_names_file_and_line(tmp_path):
    good = {"id": "a", "image": "images/a.png", "answer": {"text": "x"}}
    folder = _folder(tmp_path, [good, "{not json"])
    with pytest.raises(DataError, match=r"pages\.jsonl:2: not valid JSON"):
        load_pages(folder)


def test_missing_image_names_row_and_path(tmp_path):
    folder = _folder(tmp_path, [{"id": "a", "image": "images/missing.png", "answer": {"text": "x"}}])
    with pytest.raises(DataError, match=r"pages\.jsonl:1: image .*missing\.png does not exist"):
        load_pages(folder)


def test_unreadable_image_is_named(tmp_path):
    folder = _folder(tmp_path, [{"id": "a", "image": "images/bad.png", "answer": {"text": "x"}}])
    (folder / "images" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"bad\.png cannot be read"):
        load_pages(folder)


def test_duplicate_ids_and_unknown_fields_are_rejected(tmp_path):
    row = {"id": "a", "image": "images/a.png", "answer": {"text": "x"}}
    with pytest.raises(DataError, match="already used on line 1"):
        load_pages(_folder(tmp_path, [row, row]))
    with pytest.raises(DataError, match="unknown answer field"):
        load_pages(_folder(tmp_path, [{**row, "answer": {"corpo": "x"}}]))


def test_load_pages_takes_a_pages_file_and_explains_any_other_file(tmp_path):
    """A user passing `pages.jsonl` gets its folder; a JSONL source of their own is pointed at the loader."""
    from dharma_train.data.synthetic.generate import generate_pages

    written = generate_pages(tmp_path / "set", 2, seed=0)
    assert [page.id for page in load_pages(tmp_path / "set" / "pages.jsonl").pages] == \
        [page.id for page in written.pages]
    own = tmp_path / "mine.jsonl"
    own.write_text('{"image": "a.png", "assistant": "{}"}\n')
    with pytest.raises(DataError, match="mine.jsonl is a file, not a page folder: .*load_page_set"):
        load_pages(own)
