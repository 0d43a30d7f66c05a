"""Export: the run's final model as one standalone folder to ship, with a model card, optionally pushed to the Hub.

The folder holds merged safetensors weights (LoRA chains merged; a quantized input is copied as it is), config and
generation config, the processor with its chat template, and README.md: the model card with the run's evaluation
table per stage (read from the run's summary.json), the data families, the recipe and the library versions.
Export does not change weights, so the pipeline does not evaluate its output again.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from dharma_train.artifact import ARTIFACT_FILE, ModelArtifact
from dharma_train.data.pages import PageSet
from dharma_train.errors import ConfigError, DharmaError
from dharma_train.files import with_default_modes, write_folder_atomically, write_text_atomically
from dharma_train.run_folder import RunFolder
from dharma_train.stage import Stage, StageContext, StageResult, stage_config

# What a folder needs to be loaded and prompted with plain transformers.
REQUIRED = ("config.json", "generation_config.json", "tokenizer_config.json", "processor_config.json")


KIND = "export"  # the `kind` a stage config names in YAML


@dataclass
class ExportStageConfig:
    """`conf/stage/export.yaml`. push_to_hub: a Hub repo id (user/name) to upload the folder to; null keeps it local."""

    kind: str = KIND
    data: str | None = None  # pages whose families the card lists; null: the run's training pages
    dtype: str = "bfloat16"  # weights of a model merged here (a LoRA chain); full or quantized inputs are copied
    summary: str | None = None  # the run's summary.json for the card; null: the one beside this stage's folder
    push_to_hub: str | None = None
    private: bool = True

    def __post_init__(self):
        if self.dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"dtype must be bfloat16, float16 or float32, got {self.dtype!r}")
        if self.push_to_hub is not None and self.push_to_hub.count("/") != 1:
            raise ValueError(f"push_to_hub must be a Hub repo id 'user/name', got {self.push_to_hub!r}")


class ExportStage(Stage):
    """The run's final model as a self-contained folder with a model card (what each stage did, measured), pushed to
    the Hub when `push_to_hub` names a repo; the same weights as its input, so it is not evaluated again."""
    kind = KIND
    config_class = ExportStageConfig
    evaluates_output = False  # same weights as its input: the pipeline records it without a second evaluation

    def __init__(self, name: str, config: ExportStageConfig | dict | None = None):
        self.name = name
        self.config = stage_config(name, config, ExportStageConfig)

    def check(self) -> None:
        """An upload that cannot happen, or a given summary the card cannot read, fails before training (and before
        the old export is cleared), not after it."""
        if self.config.summary:
            from dharma_train.reporting.model_card import read_summary

            read_summary(Path(self.config.summary))
        if self.config.push_to_hub is not None:
            from huggingface_hub import constants

            if constants.HF_HUB_OFFLINE:
                raise ConfigError(f"stage {self.name}: push_to_hub={self.config.push_to_hub} but HF_HUB_OFFLINE is "
                                  "set; unset it or set push_to_hub=null and upload the folder later")

    def own_pages(self) -> str | None:
        """Its own pages (`data`), or None for the run's."""
        return self.config.data

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        """One process writes the folder (and pushes it): in a multi-GPU run rank 0 exports, the others wait."""
        from dharma_train import distributed

        return distributed.on_main(self._run, model, pages, output_dir, context)

    def _run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        from dharma_train.reporting.model_card import card_for_run, run_records
        from dharma_train.training.saving import write_stage_record

        cfg = self.config
        target = output_dir / "model"
        summary_file = Path(cfg.summary) if cfg.summary else RunFolder(output_dir.parent).summary
        records = run_records(summary_file, output_dir.parent)  # before the export: a bad record replaces nothing
        export_model(model, target, cfg.dtype, context)
        card = card_for_run(records, pages, context.run_name, target, repo_id=cfg.push_to_hub)
        write_text_atomically(target / "README.md", card)
        metrics = {"exported": str(target), "card": str(target / "README.md")}
        if cfg.push_to_hub:
            metrics["pushed"] = push_to_hub(target, cfg.push_to_hub, cfg.private)
        artifact = ModelArtifact(path=str(target))
        write_stage_record(output_dir, {"name": self.name, "kind": self.kind, "input": model.to_dict(),
                                        "output": artifact.to_dict(), "config": asdict(cfg), "metrics": metrics})
        return StageResult(self.name, artifact, metrics)


def export_model(model: ModelArtifact, target: Path, dtype: str, context: StageContext) -> Path:
    """A standalone folder a plain transformers install loads: merged weights, configs, processor, chat template."""
    from dharma_train.models.loading import load_model, load_processor

    def write(tmp: Path) -> None:
        if model.is_adapter or not model.is_local:
            network = load_model(model, dtype=dtype, settings=replace(context.model, vision_attention="stock"))
            network.save_pretrained(tmp)
            load_processor(model.processor_location).save_pretrained(tmp)
        else:
            shutil.copytree(model.path, tmp, ignore=shutil.ignore_patterns("README.md", ARTIFACT_FILE, "*.tmp*"))
            if model.processor_location != model.path:
                load_processor(model.processor_location).save_pretrained(tmp)
        _standard_processor(tmp)
        _complete_generation_config(tmp)
        missing = [name for name in REQUIRED if not (tmp / name).is_file()]
        if not any(tmp.glob("*.safetensors")):
            missing.append("*.safetensors")
        if not (tmp / "chat_template.jinja").is_file() and "chat_template" not in _json(tmp / "tokenizer_config.json"):
            missing.append("chat_template.jinja")
        if missing:
            raise DharmaError(f"export of {model.path} is incomplete: {missing} missing")
        with_default_modes(tmp)  # safetensors writes 0600; a folder to ship is readable by the group serving it

    return write_folder_atomically(target, write, needed_bytes=model.weights_bytes())  # synced, then renamed


def _standard_processor(folder: Path) -> None:
    """The tiny model's image-only processor class exists only because CPU machines lack torchvision; the exported
    folder names the stock Qwen2_5_VLProcessor (with a Qwen2-VL video processor set like its image processor), so
    AutoProcessor loads it wherever torchvision is installed."""
    from dharma_train.models.processor import Qwen2_5_VLImageProcessor

    path = folder / "processor_config.json"
    config = _json(path)
    if config.get("processor_class") != Qwen2_5_VLImageProcessor.__name__:
        return
    image = config.get("image_processor", {})
    shared = ("do_convert_rgb", "do_normalize", "do_rescale", "do_resize", "image_mean", "image_std", "merge_size",
              "patch_size", "resample", "rescale_factor", "temporal_patch_size")
    config["processor_class"] = "Qwen2_5_VLProcessor"
    config["video_processor"] = {"video_processor_type": "Qwen2VLVideoProcessor",
                                 **{key: image[key] for key in shared if key in image}}
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _complete_generation_config(folder: Path) -> None:
    """generation_config.json with the end and pad tokens, derived from config.json when a save left it out."""
    if (folder / "generation_config.json").is_file():
        return
    from transformers import AutoConfig, GenerationConfig

    GenerationConfig.from_model_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def push_to_hub(folder: Path, repo_id: str, private: bool) -> str:
    """Upload the exported folder to a Hub model repo (created if needed); any failure is one clear error."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise DharmaError(f"cannot push {folder} to {repo_id}: HF_HUB_OFFLINE is set")
    api = HfApi()  # token: HF_TOKEN or `hf auth login`
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="dharma_train export")
    except Exception as error:  # network, auth and permission errors all stop the stage the same way
        raise DharmaError(f"cannot push {folder} to the Hub repo {repo_id} ({type(error).__name__}: {error}); the "
                          f"exported folder is complete, upload it later with `hf upload {repo_id} {folder}`") from None
    return str(getattr(commit, "commit_url", commit))
