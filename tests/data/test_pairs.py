import json

import pytest

from dharma_train.data.pairs import load_pairs, loop_pairs, save_pairs
from dharma_train.errors import DataError
from dharma_train.evaluation.metrics import is_degenerate


def test_loop_pairs_reject_a_looping_answer_and_choose_the_truth(pages):
    train, _ = pages
    pairs = loop_pairs(train, "structured", seed=0)
    assert len(pairs) == len(train)
    for pair, page in zip(pairs, train):
        assert pair.chosen == page.answer.to_json()
        assert pair.rejected != pair.chosen
        assert is_degenerate(pair.rejected, hit_token_limit=True)


def test_pairs_round_trip_and_bad_rows_are_named(tmp_path, pages):
    pairs = loop_pairs(pages[0], "plain")
    path = save_pairs(pairs, tmp_path)
    assert load_pairs(tmp_path) == pairs
    rows = path.read_text().splitlines()
    broken = json.loads(rows[1])
    broken["rejected"] = broken["chosen"]
    path.write_text("\n".join([rows[0], json.dumps(broken)]))
    with pytest.raises(DataError, match=r"pairs\.jsonl:2: 'chosen' and 'rejected' are identical"):
        load_pairs(path)
    with pytest.raises(DataError, match="does not exist"):
        load_pairs(tmp_path / "none.jsonl")
