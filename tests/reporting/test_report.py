"""report.md and the plots from a hand-made summary: gains against the point each stage started from and the base."""

from dharma_train.reporting.plots import plot_run
from dharma_train.reporting.report import render_report


def _metrics(quality, cer, degeneration, by_family=True):
    metrics = {"pages": 4, "quality_score": quality, "paper_score": quality, "cer": cer, "wer": cer,
               "json_valid_rate": 1.0, "schema_valid_rate": 1.0, "placement_error_rate": 0.0,
               "degeneration_rate": degeneration, "paper_degeneration_rate": degeneration,
               "pages_per_second": 2.0, "new_tokens_per_second": 100.0, "latency_p50_seconds": 1.0,
               "latency_p95_seconds": 2.0, "token_limit_rate": degeneration, "cost_per_million_pages": 347.2}
    if by_family:
        metrics["by_family"] = {"legal": _metrics(quality - 0.1, cer, degeneration, False),
                                "printed": _metrics(quality + 0.1, cer, degeneration, False)}
    return metrics


SUMMARY = {"run": "demo", "evaluation": {"task": "structured", "max_new_tokens": 64, "price_per_hour": 2.5},
           "entries": [{"stage": "base", "kind": "base", "model": "m0", "metrics": _metrics(0.5, 0.8, 0.2), "train": {}},
                       {"stage": "sft", "kind": "sft", "model": "m1", "metrics": _metrics(0.7, 0.4, 0.3),
                        "train": {"train_loss": 1.25, "wall_seconds": 12}},
                       {"stage": "dpo", "kind": "dpo", "model": "m2", "metrics": _metrics(0.75, 0.45, 0.1),
                        "train": {"train_loss": 0.5, "wall_seconds": 3}}]}


def test_gains_are_against_the_previous_point_and_the_base():
    report = render_report(SUMMARY)
    # dpo row: quality +0.050 over sft, +0.250 over base; degeneration -0.200 over sft, -0.100 over base
    assert "| dpo | sft | +0.050 | +0.050 | +0.050 | -0.200 | +0.250 | +0.250 | -0.350 | -0.100 |" in report
    assert "| sft | base | +0.200 | +0.200 | -0.400 | +0.100 | +0.200 | +0.200 | -0.400 | +0.100 |" in report


def test_after_a_rejected_stage_the_next_gain_is_against_the_point_it_started_from():
    """sft was rejected, so dpo started from the base: its gain is over the base, not over the rejected sft."""
    entries = [SUMMARY["entries"][0],
               {**SUMMARY["entries"][1], "gate": {"verdict": "rejected", "against": "base", "regressions": ["x"]}},
               {**SUMMARY["entries"][2], "gate": {"verdict": "kept", "against": "base", "regressions": []}}]
    report = render_report({**SUMMARY, "entries": entries})
    assert "| dpo | base | +0.250 | +0.250 | -0.350 | -0.100 | +0.250 | +0.250 | -0.350 | -0.100 |" in report


def test_report_shows_speed_cost_families_and_training():
    report = render_report(SUMMARY, plots=["scores.png"])
    assert "$347" in report and "$2.50 per hour" in report
    assert "legal quality" in report and "| 0.650 |" in report  # dpo legal quality 0.75 - 0.1
    assert "| 1.250 | 12 |" in report
    assert "![scores](scores.png)" in report


def test_plots_are_written_as_png(tmp_path):
    names = plot_run(SUMMARY, tmp_path)
    assert names == ["scores.png", "degeneration.png"]
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_field_rates_get_their_own_table():
    summary = {**SUMMARY, "entries": [{**SUMMARY["entries"][0],
                                       "metrics": {**_metrics(0.5, 0.8, 0.2), "footer_cer": 0.125}}]}
    report = render_report(summary)
    assert "footer CER" in report and "0.125" in report


def test_mined_pairs_are_reported_with_their_reasons():
    mining = {"pages": 4, "pairs": 5, "generated": 8, "found_clean": 3, "found_degenerate": 5,
              "pairs_by_reason": {"degenerate": 5}}
    dpo = {**SUMMARY["entries"][2], "train": {**SUMMARY["entries"][2]["train"], "pairs": 5, "mining": mining}}
    report = render_report({**SUMMARY, "entries": SUMMARY["entries"][:2] + [dpo]})
    assert "## Preference pairs" in report
    assert "| dpo | 5 | mined | 8 | clean 3, degenerate 5 | degenerate 5 |" in report
    assert "## Preference pairs" not in render_report(SUMMARY)


def test_report_says_how_the_run_was_made_from_its_own_records(tmp_path):
    """The real command with its overrides and the data sources come from run.json, written at the run's start."""
    import json

    from dharma_train.reporting.report import write_report

    (tmp_path / "run.json").write_text(json.dumps({
        "command": "python -m dharma_train stages.dpo.beta=0.5 output_dir=/tmp/r",
        "config": {"data": {"train": "/data/bench.parquet", "synthetic": {"seed": 3}}, "stages": {}}}))
    write_report(SUMMARY, tmp_path / "report.md")
    report = (tmp_path / "report.md").read_text()
    assert "## How this run was made" in report
    assert "- command: `python -m dharma_train stages.dpo.beta=0.5 output_dir=/tmp/r`" in report
    assert "- data: `data.train`: `/data/bench.parquet`" in report
    assert "generated synthetic pages for eval (`data.synthetic`, seed 3)" in report


def test_a_rejected_stage_is_a_visible_line_before_the_tables():
    summary = {**SUMMARY, "gate": {"on_regression": "keep_best"}, "final_point": "sft",
               "entries": [{**SUMMARY["entries"][0], "gate": {"verdict": "base"}},
                           {**SUMMARY["entries"][1], "gate": {"verdict": "kept", "against": "base", "regressions": []}},
                           {**SUMMARY["entries"][2], "gate": {"verdict": "rejected", "against": "sft",
                                                              "regressions": ["quality 0.700 -> 0.650 (tolerance 0.010)"]}}]}
    report = render_report(summary)
    assert report.index("**Stage gate**") < report.index("## Quality")
    assert "kept sft; rejected dpo. The run carries on from (and exports) `sft`." in report
    assert "- **stage dpo REJECTED: worse than sft on quality 0.700 -> 0.650 (tolerance 0.010); best so far: sft**" in report
    assert "| dpo | dpo | **rejected** |" in report


def test_the_speed_table_says_what_each_point_decoded_on():
    quantized = {**SUMMARY["entries"][2], "stage": "quantize", "kind": "quantize",
                 "metrics": {**_metrics(0.7, 0.5, 0.1), "decode_backend": "int4 kernel 196/197, bfloat16 dense 1/197"}}
    report = render_report({**SUMMARY, "entries": SUMMARY["entries"] + [quantized]})
    speed = report[report.index("linears ran on"):]
    assert "| int4 kernel 196/197, bfloat16 dense 1/197 |" in speed


def test_a_skipped_stage_is_named_skipped_not_kept_also_in_an_older_summary():
    """A stage that passed its input on: `skipped` in the gate line and the table, with its reason; a summary.json
    written before the `skipped` verdict (gate `kept`, the reason in the train record) reads the same."""
    skipped = {**SUMMARY["entries"][2], "metrics": SUMMARY["entries"][1]["metrics"],
               "train": {"pairs": 0, "skipped": "only 0 preference pairs (need 1)"}}
    for gate in ({"verdict": "skipped", "against": "sft", "regressions": [],
                  "reason": "only 0 preference pairs (need 1)"},
                 {"verdict": "kept", "against": "sft", "regressions": []}):
        summary = {**SUMMARY, "final_point": "sft",
                   "entries": [{**SUMMARY["entries"][0], "gate": {"verdict": "base"}},
                               {**SUMMARY["entries"][1], "gate": {"verdict": "kept", "against": "base",
                                                                  "regressions": []}},
                               {**skipped, "gate": gate}]}
        report = render_report(summary)
        assert "kept sft; skipped dpo; rejected none. The run carries on from (and exports) `sft`." in report
        assert ("- **stage dpo skipped: it passed its input on untrained because only 0 preference pairs (need 1); "
                "its row repeats the metrics of the point before it, not evaluated again**") in report
        assert "| dpo | dpo | **skipped** |" in report
