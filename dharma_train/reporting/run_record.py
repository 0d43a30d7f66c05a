"""The run record (`output_dir/run.json`): how the run was started, with what code, packages and hardware.

Enough to repeat a run, or to tell why two runs differ: the full resolved config, the command and the one that
resumes it, dharma_train's git commit (when it runs from a checkout), package versions and the machine.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import time
from dataclasses import asdict
from functools import cache
from importlib import metadata
from pathlib import Path

from dharma_train.files import read_json_or_none, write_json_atomically
from dharma_train.run_folder import RUN_RECORD

PACKAGES = ("dharma_train", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers",
            "hydra-core", "omegaconf", "numpy", "pillow")


@cache
def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run's numbers depend on (None: not installed), and Python's."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state() -> dict | None:
    """The commit of the checkout dharma_train runs from, and whether it has uncommitted changes; None outside git."""
    source = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def hardware() -> dict:
    """The machine: CPU, memory, torch's threads, and each visible GPU."""
    import torch

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    gpus = [{"name": torch.cuda.get_device_name(i),
             "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 1024**3, 1)}
            for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(), "memory_gb": round(memory / 1024**3, 1) if memory else None,
            "torch_threads": torch.get_num_threads(), "cuda": torch.version.cuda, "gpus": gpus}


def stage_machine(device: str) -> dict:
    """What a stage's numbers depend on beyond its inputs (CPU threads change a CPU run's sums): recorded per stage."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if device == "cuda" and torch.cuda.is_available() else []
    return {"device": device, "torch_threads": torch.get_num_threads(), "cpu": _cpu_name(), "gpus": gpus,
            "packages": package_versions(), "host": platform.node()}


def machine_differences(before: dict, now: dict) -> list[str]:
    """['torch_threads: 2 -> 1', 'torch: 2.12.0 -> 2.13.0']: what differs between two stage_machine records; the
    host alone is not a difference (a cluster's nodes are alike)."""
    flat_before = {**{k: v for k, v in before.items() if k != "packages"}, **before.get("packages", {})}
    flat_now = {**{k: v for k, v in now.items() if k != "packages"}, **now.get("packages", {})}
    names = sorted((set(flat_before) | set(flat_now)) - {"host"})
    return [f"{name}: {flat_before.get(name)} -> {flat_now.get(name)}" for name in names
            if flat_before.get(name) != flat_now.get(name)]


def resume_command(argv: list[str], output_dir: str) -> str:
    """The command line that continues this run: the same overrides, with output_dir pinned to this run's folder."""
    kept = [arg for arg in argv if not arg.lstrip("+~").startswith("output_dir=")]
    return shlex.join(["python", "-m", "dharma_train", *kept, f"output_dir={Path(output_dir).resolve()}"])


def write_run_record(config, argv: list[str] | None = None) -> Path:
    """run.json for this invocation (a resumed run rewrites it; each stage's manifest keeps its own versions).

    `argv`: the command-line overrides, when the run came from the command line.
    """
    record = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(["python", "-m", "dharma_train", *argv]) if argv is not None else None,
        "resume_command": resume_command(argv, config.output_dir) if argv is not None else None,
        "config": asdict(config),
        "git": git_state(),
        "packages": package_versions(),
        "hardware": hardware(),
    }
    return write_json_atomically(Path(config.output_dir) / RUN_RECORD, record)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_provenance(run_dir: Path) -> dict:
    """How the run was made, from its own records: the command (run.json), the data sources (pages and given
    preference pairs) and what the loader skipped and why (every load_report.json under data/)."""
    record = read_json_or_none(run_dir / RUN_RECORD)  # rewritten by every run; a damaged one only loses the command
    record = record if isinstance(record, dict) and isinstance(record.get("config", {}), dict) else {}
    data = record.get("config", {}).get("data") or {}
    sources = [f"`data.{split}`: `{data[split]}`" for split in ("train", "eval", "test") if data.get(split)]
    synthetic = data.get("synthetic") or {}
    missing = [split for split in ("train", "eval") if not data.get(split)]
    if missing and synthetic:
        sources.append(f"generated synthetic pages for {' and '.join(missing)} "
                       f"(`data.synthetic`, seed {synthetic.get('seed')})")
    stages = record.get("config", {}).get("stages") or {}
    sources += [f"`stages.{name}.data`: `{stage['data']}`" for name, stage in stages.items()
                if isinstance(stage, dict) and stage.get("data")]
    sources += [f"`stages.{name}.pairs`: `{stage['pairs']}`" for name, stage in stages.items()
                if isinstance(stage, dict) and stage.get("pairs") not in (None, "mined", "synthetic")]
    reports = sorted((run_dir / "data").rglob("load_report.json")) if (run_dir / "data").is_dir() else []
    return {"command": record.get("command"), "sources": sources, "loaded": loaded_lines(reports)}


def loaded_lines(report_files: list[Path]) -> list[str]:
    """One line per source of the given load reports, with the report's own counts (report.md and the model card
    say what load_report.json says)."""
    lines = []
    for report_file in report_files:
        report = read_json_or_none(report_file)
        if not isinstance(report, dict) or not isinstance(report.get("sources", []), list):
            lines.append(f"`{report_file}` cannot be read (damaged); loading the data again rewrites it")
            continue
        lines += [source_line(source) for source in report.get("sources", []) if isinstance(source, dict)]
    return lines


def source_line(source: dict) -> str:
    """`bench.parquet` (train): 18 rows, 3 skipped (corrupt_image 1, ...); 15 used, 2 fixed (converted_mode 2);
    format parquet, and the unverified answers (silver data) when there are any."""
    def counts(name: str) -> str:
        given = source.get(name) or {}
        return f" ({', '.join(f'{key} {count}' for key, count in sorted(given.items()))})" if given else ""

    line = f"`{source.get('source')}` ({source.get('split')}): {source.get('rows')} rows, {source.get('skipped')} " \
           f"skipped{counts('skips')}"
    if "used" in source:
        line += f"; {source['used']} used, {source.get('fixed', 0)} fixed{counts('fixes')}"
    if source.get("unverified"):
        line += f"; {sum(source['unverified'].values())} unverified answers{counts('unverified')}: silver data"
    return line + (f"; format {source['format']}" if source.get("format") else "")
