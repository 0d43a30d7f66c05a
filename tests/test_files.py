import json

from dharma_train.files import write_json_atomically, write_jsonl_atomically, write_text_atomically


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "report.md"
    write_text_atomically(target, "old")
    write_text_atomically(target, "novo relatório")
    assert target.read_text(encoding="utf-8") == "novo relatório"
    write_json_atomically(tmp_path / "a.json", {"ç": 1})
    write_jsonl_atomically(tmp_path / "b.jsonl", ({"i": i} for i in range(3)))
    assert json.loads((tmp_path / "a.json").read_text()) == {"ç": 1}
    assert [json.loads(line)["i"] for line in (tmp_path / "b.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.rglob("*") if "tmp" in p.name) == []
