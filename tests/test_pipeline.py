"""The Pipeline with a user-written stage: the Stage protocol, evaluation after each stage, summary and report."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from dharma_train import EvalConfig, ModelArtifact, PageSet, Pipeline, Stage, StageContext, StageResult, TrainerConfig


@dataclass
class KeepModel(Stage):
    """A stage that changes nothing: its evaluation must equal the base's."""

    name: str
    checked: bool = False

    def check(self) -> None:
        self.checked = True

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        return StageResult(self.name, model, {"train_loss": 0.0, "pages_seen": len(pages)})


def test_custom_stage_runs_between_evaluations(tiny_artifact, pages, tmp_path):
    train, eval_pages = pages
    stage = KeepModel("noop")
    pipeline = Pipeline(stages=[stage], evaluation=EvalConfig(max_new_tokens=8, batch_size=4),
                        context=StageContext(trainer=TrainerConfig(device="cpu"), run_name="custom"))
    summary = pipeline.run(tiny_artifact, train, eval_pages, tmp_path)
    assert stage.checked
    base, noop = summary["entries"]
    assert (base["stage"], noop["stage"]) == ("base", "noop")
    assert base["metrics"]["cer"] == noop["metrics"]["cer"]  # same model, greedy decoding: same outputs
    assert noop["train"]["pages_seen"] == len(train)
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary, default=str))
    report = (tmp_path / "report.md").read_text()
    assert "| noop | KeepModel |" in report and "+0.000" in report
    predictions = (tmp_path / "01_noop" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == len(eval_pages)
    assert all(json.loads(line)["hit_token_limit"] for line in predictions)  # 8 tokens: every output is cut


@dataclass
class Knob:
    factor: float = 1.0


@dataclass
class Recorded(Stage):
    """A stage with a typed config that records when it actually runs (it passes its input model on)."""

    name: str
    config: Knob
    ran: list = None  # type: ignore[assignment]  (a default: the Stage protocol gives `config` one)

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        self.ran.append(self.name)
        return StageResult(self.name, model, {"factor": self.config.factor})


def _ladder(ran, b_factor=1.0, max_new_tokens=4, resume="auto"):
    stages = [Recorded("a", Knob(), ran), Recorded("b", Knob(b_factor), ran), Recorded("c", Knob(), ran)]
    return Pipeline(stages=stages, evaluation=EvalConfig(max_new_tokens=max_new_tokens, batch_size=2, max_pages=1),
                    context=StageContext(trainer=TrainerConfig(device="cpu", resume=resume), run_name="cache"))


def test_a_rerun_reuses_finished_stages_and_changing_one_reruns_it_and_the_later_ones(tiny_artifact, pages, tmp_path,
                                                                                      caplog):
    train, eval_pages = pages
    ran = []
    first = _ladder(ran).run(tiny_artifact, train, eval_pages, tmp_path)
    assert ran == ["a", "b", "c"]

    ran.clear()
    caplog.clear()
    with caplog.at_level("INFO", logger="dharma_train.pipeline"):
        again = _ladder(ran).run(tiny_artifact, train, eval_pages, tmp_path)
    assert ran == [], "nothing changed: nothing re-runs"
    assert again["entries"] == json.loads(json.dumps(first["entries"], default=str))
    assert "evaluating" not in caplog.text, "a reused point's stored evaluation is reused too"

    ran.clear()
    caplog.clear()
    with caplog.at_level("INFO", logger="dharma_train.pipeline"):
        changed = _ladder(ran, b_factor=2.0).run(tiny_artifact, train, eval_pages, tmp_path)
    assert ran == ["b", "c"]
    assert "stage a: reused, it finished earlier with the same inputs" in caplog.text
    assert "stage b (Recorded): runs because its config changed (factor: 1.0 -> 2.0)" in caplog.text
    assert "stage c (Recorded): runs because b before it re-ran" in caplog.text
    assert [e["train"].get("factor") for e in changed["entries"]] == [None, 1.0, 2.0, 1.0]

    ran.clear()
    caplog.clear()
    with caplog.at_level("INFO", logger="dharma_train.pipeline"):
        _ladder(ran, b_factor=2.0, max_new_tokens=6).run(tiny_artifact, train, eval_pages, tmp_path)
    assert ran == [], "an evaluation setting changes no model"
    assert caplog.text.count("evaluating ") == 4, "but every point is evaluated again"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(json.loads(line)["new_tokens"] <= 6 for line in (tmp_path / "03_c" / "predictions.jsonl").open())
    assert summary["evaluation"]["max_new_tokens"] == 6

    ran.clear()
    _ladder(ran, b_factor=2.0, max_new_tokens=6, resume="never").run(tiny_artifact, train, eval_pages, tmp_path)
    assert ran == ["a", "b", "c"], "trainer.resume=never starts every stage afresh"


def test_an_out_of_memory_stage_names_what_to_lower(tiny_artifact, pages, tmp_path):
    import torch

    from dharma_train.errors import ResourceError

    class Greedy(Recorded):
        def run(self, *args):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    pipeline = Pipeline(stages=[Greedy("big", Knob(), [])], evaluation=EvalConfig(max_new_tokens=2, max_pages=1),
                        context=StageContext(trainer=TrainerConfig(device="cpu")))
    with pytest.raises(ResourceError, match=r"CUDA ran out of memory in stage big .*model\.max_pixels"):
        pipeline.run(tiny_artifact, *pages, tmp_path)
    assert not (tmp_path / "01_big" / "manifest.json").exists()


def test_an_object_lacking_a_member_of_the_stage_contract_is_refused_before_any_work(tiny_artifact, pages, tmp_path):
    """The Stage protocol is the whole contract: what the pipeline uses is named, and a missing member is named."""
    from dharma_train.errors import ConfigError

    class Bare:
        name = "bare"

        def run(self, model, pages, output_dir, context):
            return StageResult(self.name, model, {})

    with pytest.raises(ConfigError, match=r"Bare is not a Stage: it lacks \['kind', 'config', 'evaluates_output', "
                                          r"'check', 'check_pages', 'own_pages', 'input_files'\]"):
        Pipeline(stages=[Bare()], evaluation=EvalConfig(max_new_tokens=4)).run(tiny_artifact, pages, pages, tmp_path)
    assert not (tmp_path / "00_base").exists(), "refused before the base was evaluated"


@dataclass
class OwnPages:
    data: str | None = None


@dataclass
class SaveCopy(Stage):
    """A stage that saves its input model into its own folder and trains on its own pages, as real stages do."""

    name: str
    config: OwnPages
    ran: list = None  # type: ignore[assignment]

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        import shutil

        self.ran.append(self.name)
        shutil.copytree(model.path, output_dir / "model")
        return StageResult(self.name, ModelArtifact(str(output_dir / "model")), {"pages_seen": len(pages)})


@dataclass
class OwnPagesStage(SaveCopy):
    """SaveCopy whose config names pages of its own, as a stage with `data` does."""

    def own_pages(self) -> str | None:
        return self.config.data


def test_stage_pages_reach_the_stage_that_names_its_own_and_a_missing_set_is_refused_before_any_work(
        tiny_artifact, pages, tmp_path):
    """Pages travel as values (issue 28): the stage with `data` trains on the PageSet handed to it for its name, the
    others on the run's; one that names pages but was handed none is refused before the base is evaluated."""
    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.errors import ConfigError

    train, eval_pages = pages
    own = generate_pages(tmp_path / "own", 2, seed=3)
    ran = []
    stages = [OwnPagesStage("own", OwnPages(data="my-source"), ran), OwnPagesStage("runs", OwnPages(), ran)]
    pipeline = Pipeline(stages=stages, evaluation=EvalConfig(max_new_tokens=4, batch_size=4),
                        context=StageContext(trainer=TrainerConfig(device="cpu")))
    with pytest.raises(ConfigError, match=r"\{'own': 'my-source'\} name pages of their own"):
        pipeline.run(tiny_artifact, train, eval_pages, tmp_path / "refused")
    assert not (tmp_path / "refused" / "00_base").exists()
    summary = pipeline.run(tiny_artifact, train, eval_pages, tmp_path / "run", stage_pages={"own": own})
    seen = {entry["stage"]: entry["train"]["pages_seen"] for entry in summary["entries"][1:]}
    assert seen == {"own": len(own), "runs": len(train)} and len(own) != len(train)


def test_a_moved_run_folder_reuses_its_stages_and_its_paths_point_into_the_new_place(tiny_artifact, pages, tmp_path):
    import shutil

    from dharma_train.data.synthetic.generate import generate_pages

    train, eval_pages = pages
    first = tmp_path / "run1"
    generate_pages(first / "data" / "own", 2, seed=3)

    def ladder(run, ran):
        return Pipeline(stages=[SaveCopy("copy", OwnPages(data=str(run / "data" / "own")), ran)],
                        evaluation=EvalConfig(max_new_tokens=4, batch_size=4),
                        context=StageContext(trainer=TrainerConfig(device="cpu")))

    ran = []
    ladder(first, ran).run(tiny_artifact, train, eval_pages, first)
    assert ran == ["copy"]
    shutil.move(first, tmp_path / "run1b")
    ran.clear()
    summary = ladder(tmp_path / "run1b", ran).run(tiny_artifact, train, eval_pages, tmp_path / "run1b")
    assert ran == [], "a moved run folder keeps its finished stages"
    assert summary["entries"][1]["model"] == str(tmp_path / "run1b" / "01_copy" / "model")


# ---- preconditions known at start stop the run at its start (issue 27, item 6) ---------------------------------------

def _refused_before_any_work(stages, tmp_path, pages, tiny_artifact) -> str:
    from dharma_train import ConfigError, DataError

    train, eval_pages = pages
    pipeline = Pipeline(stages=stages, context=StageContext(trainer=TrainerConfig(device="cpu")))
    with pytest.raises((ConfigError, DataError)) as refused:
        pipeline.run(tiny_artifact, train, eval_pages, tmp_path)
    assert not (tmp_path / "00_base" / "manifest.json").exists(), "refused before the base was evaluated"
    return str(refused.value)


@pytest.mark.parametrize("kinds, message", [
    (["sft:twin", "sft:twin"], "two stages are named 'twin' (stages 1 and 2)"),
    (["quantize:q", "sft:late"], "stage late (sft) comes after the quantize stage q"),
    (["quantize:q", "quantize:again"], "stage again (quantize) comes after the quantize stage q"),
    (["export:ship", "sft:late"], "stage ship (export) must be the last stage"),
])
def test_a_ladder_in_the_wrong_order_is_refused_at_start(kinds, message, tmp_path, pages, tiny_artifact):
    from dharma_train.stages import STAGES

    stages = [STAGES[kind](name) for kind, name in (word.split(":") for word in kinds)]
    assert message in _refused_before_any_work(stages, tmp_path, pages, tiny_artifact)


def test_too_few_calibration_pages_stop_the_run_before_any_training(tmp_path, pages, tiny_artifact):
    from dharma_train import QuantizeStage, SFTStage

    train, _ = pages
    stages = [SFTStage("structured"), QuantizeStage("awq", {"min_calibration_pages": len(train) + 1,
                                                            "calibration_pages": len(train) + 1})]
    message = _refused_before_any_work(stages, tmp_path, pages, tiny_artifact)
    assert f"{len(train)} calibration pages" in message
    assert "stages.awq.min_calibration_pages" in message and "stages.awq.scheme=fp8, bnb4" in message
    assert not (tmp_path / "01_structured").exists(), "the SFT stage before it never started"


def test_a_stage_takes_a_dict_config_checked_like_yaml():
    from dharma_train import ConfigError, SFTStage, SFTStageConfig

    stage = SFTStage("structured", {"task": "plain", "optimization": {"max_steps": 3}})
    assert isinstance(stage.config, SFTStageConfig) and stage.config.optimization.max_steps == 3
    with pytest.raises(ConfigError, match=r"stages\.structured\.optimization\.max_step"):
        SFTStage("structured", {"optimization": {"max_step": 3}})
    with pytest.raises(ConfigError, match="must be a SFTStageConfig or a dict"):
        SFTStage("structured", "lora")


@dataclass
class PassOn(Stage):
    """A stage that finds nothing to train on and says so (as DPO does with too few mined pairs)."""

    name: str
    kind: str = "dpo"

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        return StageResult(self.name, model, {"pairs": 0}, skipped="only 0 preference pairs (need 1)")


def test_a_stage_that_passes_its_input_on_is_logged_reported_and_carded_as_skipped_and_not_evaluated_again(
        tiny_artifact, pages, tmp_path, caplog):
    from dharma_train.stages.export import ExportStage

    train, eval_pages = pages
    pipeline = Pipeline(stages=[PassOn("dpo"), ExportStage("export")],
                        evaluation=EvalConfig(max_new_tokens=4, batch_size=2, max_pages=2),
                        context=StageContext(trainer=TrainerConfig(device="cpu"), run_name="skip"))
    with caplog.at_level("INFO", logger="dharma_train.pipeline"):
        summary = pipeline.run(tiny_artifact, train, eval_pages, tmp_path)
    assert "stage dpo skipped: it passed base on untrained because only 0 preference pairs (need 1); not evaluated " \
           "again" in caplog.text
    assert caplog.text.count("evaluating ") == 1  # the base alone
    assert not (tmp_path / "01_dpo" / "predictions.jsonl").exists()
    base, dpo = summary["entries"]
    assert dpo["gate"] == {"verdict": "skipped", "against": "base", "regressions": [],
                           "reason": "only 0 preference pairs (need 1)"}
    assert dpo["metrics"] == base["metrics"] and dpo["train"]["skipped"] == "only 0 preference pairs (need 1)"
    assert summary["final_point"] == "base"
    report = (tmp_path / "report.md").read_text()
    assert "kept none; skipped dpo; rejected none. The run carries on from (and exports) `base`." in report
    assert "| dpo | dpo | **skipped** |" in report
    card = (tmp_path / "02_export" / "model" / "README.md").read_text()
    assert "| dpo | dpo | skipped |" in card and "dpo (dpo, skipped)" in card
    assert "Skipped (passed its input on untrained, so its row repeats the point before it): dpo (only 0" in card
    assert "These weights are those of `base`." in card

    caplog.clear()
    with caplog.at_level("INFO", logger="dharma_train.pipeline"):
        again = pipeline.run(tiny_artifact, train, eval_pages, tmp_path)  # reused: still skipped, not evaluated
    assert again["entries"][1]["gate"]["verdict"] == "skipped" and "stage dpo skipped" in caplog.text
