"""The comparison of runs: one row per base and evaluated point, from their summary.json files alone."""

import csv
import json

import pytest

from dharma_train.errors import DataError
from dharma_train.reporting.comparison import compare, main, stage_order, to_markdown, write_comparison


def _entry(stage, kind, quality, degeneration, cost, skipped=None):
    metrics = {"quality_score": quality, "paper_score": quality / 2, "cer": 1 - quality,
               "json_valid_rate": 1.0 if quality > 0.5 else 0.25, "schema_valid_rate": 1.0 if quality > 0.7 else 0.0,
               "degeneration_rate": degeneration, "paper_degeneration_rate": degeneration / 2,
               "cost_per_million_pages": cost,
               "by_family": {"printed": {"quality_score": quality + 0.01, "degeneration_rate": degeneration},
                             "legal": {"quality_score": quality - 0.01, "degeneration_rate": 0.0}}}
    train = {} if stage == "base" else {"wall_seconds": 10.0, **({"skipped": skipped} if skipped else {})}
    return {"stage": stage, "kind": kind, "model": f"/m/{stage}", "metrics": metrics, "train": train}


def _run(folder, entries):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"run": folder.name, "evaluation": {}, "entries": entries}))
    return folder


@pytest.fixture
def runs(tmp_path):
    """A general base that skipped the OCR rung, and one that took it."""
    return {
        "general": _run(tmp_path / "general", [_entry("base", "base", 0.10, 0.50, 900.0),
                                               _entry("structured", "sft", 0.60, 0.04, 300.0),
                                               _entry("dpo", "dpo", 0.62, 0.01, 280.0)]),
        "with_rung": _run(tmp_path / "with_rung", [_entry("base", "base", 0.10, 0.50, 900.0),
                                                   _entry("general_ocr", "sft", 0.40, 0.02, 320.0),
                                                   _entry("structured", "sft", 0.80, 0.01, 250.0),
                                                   _entry("dpo", "dpo", 0.80, 0.01, 250.0, skipped="too few pairs")]),
    }


def test_one_row_per_base_and_point_with_the_summary_values(runs):
    rows = compare(runs)
    assert [(r["base"], r["stage"]) for r in rows] == [
        ("general", "base"), ("general", "structured"), ("general", "dpo"),
        ("with_rung", "base"), ("with_rung", "general_ocr"), ("with_rung", "structured"), ("with_rung", "dpo")]
    structured = rows[5]
    assert structured["quality"] == 0.80 and structured["degeneration"] == 0.01
    assert structured["cost_per_million_pages"] == 250.0 and structured["paper_degeneration"] == 0.005
    assert structured["printed_quality"] == pytest.approx(0.81) and structured["legal_degeneration"] == 0.0
    assert rows[6]["skipped"] == "too few pairs" and rows[0]["train_seconds"] is None


def test_the_stage_axis_merges_every_base_in_ladder_order(runs):
    assert stage_order(compare(runs)) == ["base", "general_ocr", "structured", "dpo"]
    assert stage_order(compare(dict(reversed(list(runs.items()))))) == ["base", "general_ocr", "structured", "dpo"]


def test_markdown_csv_and_plots_hold_the_same_numbers(runs, tmp_path):
    rows = compare(runs)
    written = write_comparison(rows, tmp_path / "out")
    assert sorted(p.name for p in written) == ["comparison.csv", "comparison.md", "comparison_degeneration.png",
                                               "comparison_scores.png"]
    with (tmp_path / "out" / "comparison.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows) and float(table[5]["quality"]) == 0.80 and table[1]["stage"] == "structured"
    markdown = (tmp_path / "out" / "comparison.md").read_text()
    assert "| with_rung | structured | sft | 0.800 | 0.400 | 0.200 | 100% | 100% | 1.0% | 0.5% | $250 |" in markdown
    assert "| general | structured | sft | 0.600 | 0.300 | 0.400 | 100% | 0% |" in markdown
    assert "| base | stage | kind | quality | paper_score | cer | json_valid | schema_valid | degeneration |" in markdown
    assert float(table[5]["json_valid"]) == 1.0 and float(table[0]["schema_valid"]) == 0.0
    assert "| general | base | base | 0.100 |" in markdown
    assert "printed_quality" in markdown and "`with_rung` / `dpo`: too few pairs" in markdown
    for name in ("comparison_scores.png", "comparison_degeneration.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in markdown


def test_the_gate_verdicts_reach_the_comparison(tmp_path):
    """An ablation's table says which stage each base kept and which it rejected."""
    from dharma_train.reporting.comparison import to_markdown

    entries = [_entry("base", "base", 0.1, 0.5, 900.0), _entry("structured", "sft", 0.3, 0.0, 300.0),
               _entry("dpo", "dpo", 0.15, 0.0, 300.0)]
    for entry, verdict in zip(entries, ("base", "kept", "rejected")):
        entry["gate"] = {"verdict": verdict, "against": "structured", "regressions": []}
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"entries": entries}))
    rows = compare({"b": run})
    assert [row["gate"] for row in rows] == ["base", "kept", "rejected"]
    markdown = to_markdown(rows)
    assert "| b | dpo | dpo | 0.150 |" in markdown and "rejected |" in markdown
    assert "## Stages the gate rejected" in markdown and "- `b` / `dpo`" in markdown


def test_a_folder_without_a_summary_is_named(tmp_path):
    with pytest.raises(DataError, match="nothing/summary.json does not exist"):
        compare({"x": tmp_path / "nothing"})
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text("{")
    with pytest.raises(DataError, match="bad/summary.json: not valid JSON"):
        compare({"x": tmp_path / "bad"})


def test_command_line_names_runs_by_folder_or_explicitly(runs, tmp_path, capsys):
    assert main([f"qwen={runs['general']}", str(runs["with_rung"]), "--out", str(tmp_path / "cli")]) == 0
    table = list(csv.DictReader((tmp_path / "cli" / "comparison.csv").open()))
    assert {row["base"] for row in table} == {"qwen", "with_rung"}
    assert "| qwen | dpo | dpo |" in capsys.readouterr().out
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "cli2")]) == 2


def test_an_ablation_folder_is_compared_as_its_bases(runs, tmp_path, capsys):
    """The runs fixture's folder is laid out as an ablation's: one run folder per base, no summary.json of its own."""
    ablation = tmp_path
    assert main([str(ablation), "--out", str(tmp_path / "out")]) == 0
    table = list(csv.DictReader((tmp_path / "out" / "comparison.csv").open()))
    assert [row["base"] for row in table[:1] + table[3:4]] == ["general", "with_rung"]
    said = capsys.readouterr().err
    assert (f"{ablation}: an ablation's folder, compared as its bases: general={runs['general']}, "
            f"with_rung={runs['with_rung']}") in said
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "out2")]) == 2
    assert "pass the ablation's folder or those, as NAME=FOLDER" in capsys.readouterr().err


def test_markdown_leaves_missing_metrics_blank():
    rows = [{"base": "b", "stage": "base", "kind": "base", "quality": None, "cer": 0.5}]
    assert "| b | base | base |  |  | 0.500 |" in to_markdown(rows)


def test_comparison_checks_the_evaluation_pages_by_content(runs, tmp_path, capsys):
    from dharma_train.data.synthetic.generate import generate_pages

    same = generate_pages(runs["general"] / "data" / "eval", 3, seed=5)
    generate_pages(runs["with_rung"] / "data" / "eval", 3, seed=5)
    assert main([str(runs["general"]), str(runs["with_rung"]), "--output-dir", str(tmp_path / "same")]) == 0
    assert "Every base was evaluated on the same 3 pages after each point (content fingerprint" in \
        (tmp_path / "same" / "comparison.md").read_text()
    generate_pages(runs["with_rung"] / "data" / "eval", 3, seed=6)  # same ids, other pages
    assert main([str(runs["general"]), str(runs["with_rung"]), "--output-dir", str(tmp_path / "other")]) == 0
    text = (tmp_path / "other" / "comparison.md").read_text()
    assert "WARNING: the bases were NOT evaluated on the same pages" in text
    assert f"general: 3 pages in {same.root}" in text and "with_rung: 3 pages in" in text
    assert "(same ids, different content)" in text
    (runs["with_rung"] / "data" / "eval" / "pages.jsonl").unlink()
    write_comparison(compare(runs), tmp_path / "unknown", runs)
    assert "not known: no evaluation page folder was found for with_rung" in \
        (tmp_path / "unknown" / "comparison.md").read_text()


def test_a_stage_that_passed_its_input_on_is_skipped_in_the_comparison_not_kept(runs):
    """The fixture's with_rung/dpo is an older summary's skipped stage (no gate verdict, the reason in its train
    record); a current one says `skipped` in its gate."""
    rows = compare(runs)
    assert rows[6]["gate"] == "skipped" and rows[6]["skipped"] == "too few pairs"
    assert "| with_rung | dpo | dpo |" in to_markdown(rows) and "| skipped |" in to_markdown(rows)
