"""A non-editable install (a wheel) carries conf/ and recipes/, and the entry point finds them from anywhere."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_configs_and_runs_from_another_directory(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("dharma_train-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("dharma_train/conf/config.yaml", "dharma_train/conf/stage/sft.yaml",
                     "dharma_train/conf/model/nanonets_3b.yaml", "dharma_train/recipes/tiny.yaml",
                     "dharma_train/recipes/nanonets_3b.yaml", "dharma_train/data/sources/tables.py",
                     "dharma_train/models/tiny_reader/model-00001-of-00002.safetensors",
                     "dharma_train/models/tiny_reader/tokenizer.json", "dharma_train/models/tiny_reader/README.md"):
        assert required in names, required
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run([sys.executable, "-c", "import dharma_train.config_files as c; print(c.config_dir())"],
                            cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip().startswith(str(tmp_path / "site")), "configs must come from the installed wheel"
    result = subprocess.run([sys.executable, "-m", "dharma_train", "recipe=nanonets_3b", "--cfg", "job"],
                            cwd=elsewhere, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "nanonets/Nanonets-OCR2-3B" in result.stdout
