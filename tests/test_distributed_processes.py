"""Two real processes (gloo, on the CPU) through `accelerate launch`: evaluation and mining split the pages and
gather them back with none lost or doubled, every process agrees on rank 0's values, and only rank 0 writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dharma_train.data.synthetic.generate import generate_pages
from dharma_train.evaluation.hook import EvalConfig, evaluate
from dharma_train.models.loading import load_model, load_processor
from dharma_train.stages.mining import MiningConfig, mine_pairs

pytestmark = pytest.mark.slow  # two processes load the model and generate: about a minute on 2 busy cores

WORKER = Path(__file__).with_name("distributed_worker.py")
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517"]
THROUGHPUT = {"seconds", "pages_per_second", "new_tokens_per_second", "latency_p50_seconds", "latency_p95_seconds",
              "cost_per_million_pages"}


@pytest.fixture(scope="module")
def two_processes(tiny_artifact, tmp_path_factory):
    """5 pages (not divisible by 2) through the worker on 2 processes; each process's result."""
    root = tmp_path_factory.mktemp("two")
    pages = generate_pages(root / "pages", 5, seed=3, id_prefix="odd")
    out = root / "out"
    out.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*LAUNCH, str(WORKER), tiny_artifact.path, str(pages.root), str(out)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]
    return pages, out, ranks


def test_both_processes_ran_in_one_group_on_disjoint_shards(two_processes):
    pages, _, ranks = two_processes
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["shard"] + ranks[1]["shard"] == [p.id for p in pages]
    assert (len(ranks[0]["shard"]), len(ranks[1]["shard"])) == (3, 2)


def test_evaluation_gathers_every_page_once_and_matches_one_process(two_processes, tiny_artifact):
    pages, out, ranks = two_processes
    predictions = [json.loads(line) for line in (out / "rank0" / "evaluation" / "predictions.jsonl").open()]
    assert [p["id"] for p in predictions] == [p.id for p in pages]  # every page, once, in order
    alone = evaluate(load_model(tiny_artifact), load_processor(tiny_artifact.path), pages,
                     EvalConfig(max_new_tokens=8, batch_size=1), progress=False)
    for r in ranks:  # every process returns the same quality metrics, equal to a one-process run's
        assert {k: v for k, v in r["metrics"].items() if k not in THROUGHPUT} == \
               {k: v for k, v in alone.items() if k not in THROUGHPUT}
        assert r["metrics"]["pages_per_second"] > 0


def test_mining_gathers_every_page_once_and_matches_one_process(two_processes, tiny_artifact):
    pages, _, ranks = two_processes
    config = MiningConfig(samples_per_page=0, max_new_tokens=8, batch_size=1)
    pairs, stats = mine_pairs(load_model(tiny_artifact), load_processor(tiny_artifact.path), pages, "structured",
                              config, progress=False)
    for r in ranks:
        assert r["mining"]["generated"] == len(pages)  # no page lost or counted twice
        assert {k: v for k, v in r["mining"].items() if k != "seconds"} == \
               {k: v for k, v in stats.items() if k != "seconds"}
        assert [(p["id"], p["rejected"]) for p in r["pairs"]] == [(p.id, p.rejected) for p in pairs]


def test_only_rank_zero_writes(two_processes):
    _, out, ranks = two_processes
    written = {path.relative_to(out / "rank0").as_posix() for path in (out / "rank0").rglob("*") if path.is_file()}
    assert {"evaluation/predictions.jsonl", "pipeline/summary.json", "pipeline/report.md",
            "pipeline/00_base/metrics.json", "pipeline/01_noop/predictions.jsonl"} <= written
    assert not [path for path in (out / "rank1").rglob("*") if path.is_file()], "rank 1 wrote files"
    assert [r["output_dir"] for r in ranks] == ["outputs/run-0", "outputs/run-0"]  # rank 0's folder everywhere


def test_an_error_on_rank_zero_inside_on_main_reaches_every_process(two_processes):
    _, _, ranks = two_processes
    assert [r["on_main_failure"] for r in ranks] == ["rank 0 found bad data"] * 2
