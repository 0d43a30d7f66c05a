"""Long jobs, as users run them: `python -m dharma_train` killed mid-stage or mid-save, then the same command again.

A short two-rung ladder runs once uninterrupted (the reference). A run interrupted twice and resumed with the same
command must end with exactly the reference's evaluation metrics and final weights: the CPU run is deterministic,
and the resumed stage restores optimizer, scheduler, RNG and data position from its checkpoint.
"""

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# The tiny recipe's two SFT rungs, short (its DPO stage left out to keep CI quick; tests/stages/test_dpo.py resumes
# DPO on its saved pairs).
SHORT = ["recipe=tiny_random", "~stages.dpo", "stages.general_ocr.optimization.max_steps=4", "stages.structured.optimization.max_steps=6",
         "data.synthetic.train_pages=8", "data.synthetic.eval_pages=2", "evaluation.max_new_tokens=8",
         "trainer.checkpoint_every=2", "trainer.logging_steps=1",
         *[f"stages.{name}.optimization.batch_size=4" for name in ("general_ocr", "structured")]]
TIMING = {"seconds", "pages_per_second", "new_tokens_per_second", "latency_p50_seconds", "latency_p95_seconds",
          "cost_per_million_pages"}
ENV = {"HF_HUB_OFFLINE": "1"}


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dharma_train", *SHORT, *extra, f"output_dir={out}"]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=900)


def _start(command: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, env={**os.environ, **ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended before {path} appeared:\n{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


def _quality(summary_path: Path) -> dict:
    """Each point's evaluation metrics without the timing ones (wall-clock speed differs between any two runs)."""
    entries = json.loads(summary_path.read_text())["entries"]
    return {e["stage"]: {k: v for k, v in e["metrics"].items() if k not in TIMING} for e in entries}


def _weights(run: Path) -> str:
    return hashlib.sha256((run / "02_structured" / "model" / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same command, never interrupted."""
    folder = tmp_path_factory.mktemp("reference")
    result = _run(_command(folder / "run"), folder)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return folder / "run"


KILL_DURING_SAVE = """
import os, signal, sys
import dharma_train.files as files
from dharma_train.__main__ import main

real_sync = files._sync_file

def sync_then_die(path):
    # The model's weights are written and synced into model.tmp; the folder is not yet renamed into place.
    real_sync(path)
    if path.name == "model.safetensors" and path.parent.name == "model.tmp" and "01_general_ocr" in str(path):
        os.kill(os.getpid(), signal.SIGKILL)

files._sync_file = sync_then_die
sys.argv = ["dharma_train", *sys.argv[1:]]
main()
"""


def test_killed_inside_a_save_then_by_sigterm_mid_stage_the_same_command_ends_as_if_never_interrupted(reference,
                                                                                                     tmp_path):
    """One run, interrupted twice: SIGKILL inside the first stage's model save (the stage must not count as
    finished), then SIGTERM in the middle of the second stage (checkpoint, clean exit, resume command)."""
    out = tmp_path / "run"
    driver = tmp_path / "kill_during_save.py"
    driver.write_text(KILL_DURING_SAVE)
    killed = _run([sys.executable, str(driver), *_command(out)[3:]], tmp_path)
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-3000:]
    first = out / "01_general_ocr"
    assert (first / "model.tmp" / "model.safetensors").is_file(), "the kill landed inside the save"
    assert not (first / "model").exists() and not (first / "manifest.json").exists()

    process = _start(_command(out), tmp_path)
    _wait_for(out / "02_structured" / "trainer" / "checkpoint-2" / "trainer_state.json", process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "stage general_ocr (sft): runs because it has not finished in this output_dir before" in output
    assert "stage structured stopped by SIGTERM at step" in output and "Traceback" not in output
    assert f"resume with:\n  {shlex.join(['python', '-m', 'dharma_train', *SHORT, f'output_dir={out}'])}" in output
    assert (first / "manifest.json").is_file() and not (first / "model.tmp").exists()
    assert not (out / "02_structured" / "manifest.json").exists(), "an interrupted stage is not finished"
    assert not (out / "02_structured" / "model").exists()

    resumed = _run(_command(out), tmp_path)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert "stage general_ocr: reused" in log
    assert "stage structured: resuming from" in log and "checkpoint-" in log
    assert _quality(out / "summary.json") == _quality(reference / "summary.json")
    assert _weights(out) == _weights(reference), "same weights, byte for byte, as the uninterrupted run"
    assert not list(out.glob("*/trainer/checkpoint-*")), "finished stages drop their checkpoints"
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["trainer"]["seed"] == 0 and record["packages"]["torch"]
    assert record["resume_command"].endswith(f"output_dir={out}")


def test_sigterm_to_the_whole_process_group_with_loader_workers_still_checkpoints_and_exits_cleanly(tmp_path):
    """A scheduler's time limit (Slurm, `timeout`) signals every process of the job, the data-loader workers too:
    they must leave the stop to the trainer rather than die and take the step down with a worker error."""
    out = tmp_path / "run"
    process = subprocess.Popen(_command(out, "trainer.dataloader_workers=2"), cwd=tmp_path,
                               env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    _wait_for(out / "01_general_ocr" / "trainer" / "checkpoint-2" / "trainer_state.json", process)
    os.killpg(process.pid, signal.SIGTERM)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "stage general_ocr stopped by SIGTERM at step" in output, output[-3000:]
    assert "Traceback" not in output and "DataLoader worker" not in output, output[-3000:]


# ---- the run folder: one writer, a full disk, damaged outputs, another machine (issue 20) ----------------------

def _limited(max_file_bytes: int):
    """For the child: files larger than this fail with EFBIG (SIGXFSZ ignored), as a full disk fails with ENOSPC.
    A file-size limit needs no root and no mount, and gives the same OSError path as a disk that fills."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, resource.RLIM_INFINITY))
    return limit


def test_two_runs_started_together_into_one_folder_one_stops_at_once_and_kill_9_leaves_no_stale_lock(reference,
                                                                                                   tmp_path):
    """What a scheduler does when it requeues a job whose first copy still runs: whichever takes the run folder's
    lock first runs, the other stops before writing, naming it; the winner killed with SIGKILL frees the folder."""
    from dharma_train.run_lock import hold_run_lock

    out = tmp_path / "run"
    runs = [_start(_command(out), tmp_path) for _ in range(2)]
    deadline = time.monotonic() + 600
    while all(run.poll() is None for run in runs) and time.monotonic() < deadline:
        time.sleep(0.1)
    loser = next((run for run in runs if run.poll() is not None), None)
    assert loser is not None, "neither run stopped"
    winner = runs[1 - runs.index(loser)]
    log = loser.communicate(timeout=60)[0]
    assert loser.returncode == 2, log[-3000:]
    assert f"{out} is in use by another dharma_train run (pid {winner.pid} on host " in log, log[-3000:]
    assert "Traceback" not in log and winner.poll() is None, "the winner goes on untouched"
    winner.send_signal(signal.SIGKILL)
    winner.communicate(timeout=60)
    with hold_run_lock(out):  # the OS dropped the dead run's lock: the next run goes ahead
        pass


def test_the_disk_filling_during_a_checkpoint_is_one_line_and_the_same_command_resumes(reference, tmp_path):
    """A 4 MB file-size limit fails the first stage's first checkpoint (its weights, 3.1 MB, fit; the optimizer
    state, two fp32 moments per weight, does not): the run prints what was being written, the room needed and free, and the resume
    command, exits 2, and leaves nothing partial that counts as finished. The same command without the limit then
    ends as the uninterrupted reference did. (A model save that fills the disk: tests/test_files.py.)"""
    out = tmp_path / "run"
    stage = out / "01_general_ocr"
    failed = subprocess.run(_command(out), cwd=tmp_path, env={**os.environ, **ENV}, capture_output=True, text=True,
                            timeout=900, preexec_fn=_limited(4 << 20))
    log = failed.stdout + failed.stderr
    assert failed.returncode == 2, log[-3000:]
    assert f"stage general_ocr: writing a checkpoint in {stage / 'trainer'} ran out of room: it needs about " in log
    assert " are free in " in log and "at most 4.0 MB (ulimit -f)). Nothing cut short counts as finished" in log
    assert f"resume with:\n  {shlex.join(['python', '-m', 'dharma_train', *SHORT, f'output_dir={out}'])}" in log
    assert "Traceback" not in log, log[-3000:]
    assert not (stage / "manifest.json").exists() and not (stage / "model").exists()
    assert not list((stage / "trainer").glob("checkpoint-*")), "the checkpoint cut short is removed at the failure"
    assert f"removing {stage / 'trainer' / 'checkpoint-2'}: its save did not finish" in log
    resumed = _run(_command(out, "~stages.quantize", "~stages.export"), tmp_path)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    reference_quality = _quality(reference / "summary.json")
    assert _quality(out / "summary.json") == {k: reference_quality[k] for k in ("base", "general_ocr", "structured")}
    assert _weights(out) == _weights(reference)


def test_on_another_machine_a_finished_run_is_reused_and_the_log_and_report_say_so(reference, tmp_path):
    """CPU threads change a CPU run's sums (so its numbers): a run reused with other threads names the difference
    rather than mixing silently; nothing re-runs."""
    made_with = json.loads((reference / "01_general_ocr" / "manifest.json").read_text())["made_on"][0]
    threads = 1 if made_with["torch_threads"] != 1 else 2
    again = subprocess.run(_command(reference), cwd=tmp_path, capture_output=True, text=True, timeout=900,
                           env={**os.environ, **ENV, "OMP_NUM_THREADS": str(threads)})
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-3000:]
    note = (f"stage structured was made on another machine than this run's (torch_threads: "
            f"{made_with['torch_threads']} -> {threads}); reused as it is, not re-run")
    assert note in log and "stage structured: reused" in log and "runs because" not in log, log[-3000:]
    assert "## Machines\n\n- stage general_ocr was made on another machine" in (reference / "report.md").read_text()


ABSOLUTE_PATH = re.compile(r"""(?:^|[\s"'`(=])(/[^\s"'`),]+)""", re.MULTILINE)


def test_a_copied_run_folder_names_only_paths_inside_itself_and_is_reused_and_compared_where_it_lies(reference,
                                                                                                    tmp_path):
    """Every path a run writes into its folder (summary.json, report.md, manifests, stage records) is relative to
    it, except the base model's, which lies outside by nature, and the command as typed; the copy is reused whole
    and read where it lies."""
    from dharma_train.reporting.comparison import compare, read_summary

    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(reference, copy)
    base_model = read_summary(reference)["entries"][0]["model"]  # the tiny model's cache
    records = [copy / "summary.json", copy / "report.md", *copy.glob("*/manifest.json"), *copy.glob("*/stage.json")]
    for record in records:  # report.md's command line is the command as typed, output_dir included: not a path kept
        text = "\n".join(line for line in record.read_text().splitlines() if not line.startswith("- command: "))
        assert str(reference) not in text and "outputs/" not in text, record
        assert set(ABSOLUTE_PATH.findall(text)) <= {base_model}, (record, set(ABSOLUTE_PATH.findall(text)))
    assert "- `structured`: 02_structured/model\n" in (copy / "report.md").read_text()
    shutil.rmtree(reference.parent / "moved-away", ignore_errors=True)
    reference.rename(reference.parent / "moved-away")  # nothing may still point at the original
    try:
        again = _run(_command(copy), tmp_path)
    finally:
        (reference.parent / "moved-away").rename(reference)
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-3000:]
    assert "runs because" not in log and log.count(": reused, it finished earlier with the same inputs") == 4, \
        log[-3000:]
    summary = read_summary(copy)
    for entry in summary["entries"][1:] + summary["not_evaluated"]:
        assert Path(entry["model"]).parent.parent == copy and Path(entry["model"]).is_dir(), entry["model"]
    rows = compare({"copy": copy})
    assert [row["stage"] for row in rows] == ["base", "general_ocr", "structured", "quantize"]
    assert rows == compare({"copy": reference})


def test_damaged_weights_of_a_finished_stage_are_never_reused(reference, tmp_path):
    """Truncated weights of a finished stage: the next run says which file changed and trains the stage again, to
    the same bytes. (Last in this file: it re-runs the reference's folder without its last two stages.)"""
    weights = reference / "02_structured" / "model" / "model.safetensors"
    before = _weights(reference)
    size = weights.stat().st_size
    os.truncate(weights, size // 2)
    again = _run(_command(reference, "~stages.quantize", "~stages.export"), tmp_path)
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-3000:]
    assert "stage general_ocr: reused" in log
    assert (f"stage structured (sft): runs because 02_structured/model/model.safetensors changed since it was "
            f"written ({size} bytes, now {size // 2})") in log, log[-3000:]
    assert "resuming" not in log, "a finished stage that runs again starts clean"
    assert _weights(reference) == before
