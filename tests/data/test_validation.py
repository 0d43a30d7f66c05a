"""Row checks: what each column may hold, and a report where rows = used + skipped with every reason explained."""

import json

import pytest

from dharma_train.data.schema import PageAnswer
from dharma_train.data.validation import FIX_REASONS, SKIP_REASONS, LoadReport, RowProblem, SourceReport, read_row_text


def test_missing_schema_fields_are_empty_as_in_the_benchmark():
    text = read_row_text({"id": 3, "assistant": json.dumps({"text": "só corpo"})})
    assert text == type(text)("3", PageAnswer(text="só corpo"), "structured", "printed")


def test_answer_object_family_category_and_task_columns():
    text = read_row_text({"id": "a", "answer": {"header": "H", "text": "T"}, "category": "legal", "task": "plain"})
    assert (text.answer.header, text.family, text.task) == ("H", "legal", "plain")
    assert read_row_text({"id": 1, "assistant_without_json": "corrido"}).task == "plain"


@pytest.mark.parametrize("fields, reason", [
    ({"assistant": "{}"}, "missing_field"),  # no id
    ({"id": 1.5, "assistant": '{"text": "a"}'}, "non_string_value"),
    ({"id": True, "assistant": '{"text": "a"}'}, "non_string_value"),
    ({"id": 1, "assistant": '["text", "a"]'}, "invalid_json"),
    ({"id": 1, "assistant": '"{\\"text\\": \\"a\\"}"'}, "invalid_json"),  # JSON encoded twice
    ({"id": 1, "assistant": "   "}, "empty_answer"),
    ({"id": 1, "assistant": '{"text": "", "header": " "}'}, "empty_answer"),
    ({"id": 1, "assistant_without_json": ""}, "empty_answer"),
    ({"id": 1, "assistant": 7}, "non_string_value"),
    ({"id": 1, "assistant_without_json": ["a"]}, "non_string_value"),
    ({"id": 1, "assistant": '{"text": null}'}, "non_string_value"),
    ({"id": 1, "assistant": '{"text": "a", "body": "b"}'}, "extra_fields"),
    ({"id": 1, "assistant": '{"text": "a"}', "task": "markdown"}, "invalid_value"),
    ({"id": 1, "assistant": '{"text": "a"}', "family": ""}, "invalid_value"),
    ({"id": 1, "assistant": '{"text": "a"}', "family": 3}, "invalid_value"),
])
def test_bad_rows_name_their_reason(fields, reason):
    with pytest.raises(RowProblem) as problem:
        read_row_text(fields)
    assert problem.value.reason == reason and reason in SKIP_REASONS


def test_report_counts_add_up_and_explain_their_reasons():
    report = SourceReport(split="train", source="x.parquet", format="parquet")
    text = read_row_text({"id": 1, "assistant": '{"text": "a"}'})
    report.use(text, [], "x row 0")
    report.use(text, [("resized", "10x10 -> 5x5"), ("converted_mode", "P -> RGB")], "x row 1")
    for index in range(7):
        report.skip("invalid_json", "bad", f"x row {index + 2}", str(index))
    data = report.to_dict()
    assert (data["rows"], data["used"], data["fixed"], data["skipped"]) == (9, 2, 1, 7)
    assert data["fixes"] == {"converted_mode": 1, "resized": 1} and data["skips"] == {"invalid_json": 7}
    assert len(data["examples"]["invalid_json"]) == 5, "examples are capped, counts are not"
    assert "9 rows: 2 used (1 fixed), 7 skipped; skipped: invalid_json 7" in report.summary_line()
    reasons = LoadReport(sources=[report]).to_dict()["reasons"]
    assert reasons == {"skip": {"invalid_json": SKIP_REASONS["invalid_json"]},
                       "fix": {key: FIX_REASONS[key] for key in ("converted_mode", "resized")}, "unverified": {}}


def test_answers_from_a_pdf_text_layer_are_counted_as_unverified():
    report = SourceReport(split="train", source="silver", format="pages")
    report.use(read_row_text({"id": 1, "answer": {"text": "a"}, "answer_source": "pdf_text_layer"}), [], "row 0")
    report.use(read_row_text({"id": 2, "answer": {"text": "b"}}), [], "row 1")
    assert report.unverified == {"pdf_text_layer": 1} and report.to_dict()["unverified"] == {"pdf_text_layer": 1}
    assert report.summary_line().endswith("; unverified answers: pdf_text_layer 1")
    explained = LoadReport(sources=[report]).to_dict()["reasons"]["unverified"]
    assert "silver data" in explained["pdf_text_layer"]
    with pytest.raises(RowProblem, match="answer_source must be one of"):
        read_row_text({"id": 3, "answer": {"text": "c"}, "answer_source": "checked by me"})
