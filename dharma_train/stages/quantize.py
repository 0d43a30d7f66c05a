"""Post-training quantization: the merged model in, a smaller checkpoint out that plain transformers and vLLM load.

Schemes:
- awq_w4a16: AWQ through llm-compressor: 4-bit integer weights (symmetric, one scale per `group_size` inputs, 128 by
  default), 16-bit activations, calibrated on the run's own training pages (each page's image, prompt and answer),
  saved in compressed-tensors format;
- fp8: FP8 weights and dynamic per-token FP8 activations through llm-compressor; needs no calibration;
- bnb4: bitsandbytes NF4 weights through transformers; needs no calibration, loads with bitsandbytes only.
The vision tower and lm_head stay in 16 bits by default (`ignore`).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dharma_train import distributed
from dharma_train.artifact import ModelArtifact
from dharma_train.console import drop_library_notices, one_bar
from dharma_train.data.pages import PageSet
from dharma_train.errors import ConfigError, DataError
from dharma_train.files import write_folder_atomically
from dharma_train.stage import Stage, StageContext, StageResult, stage_config

SCHEMES = ("awq_w4a16", "fp8", "bnb4")
CALIBRATED = ("awq_w4a16",)
SUPPORTED_ARCHITECTURES = ("Qwen2_5_VLForConditionalGeneration",)
PACKAGES = {"awq_w4a16": ("llmcompressor", "pip install 'dharma_train[quantize]'"),
            "fp8": ("llmcompressor", "pip install 'dharma_train[quantize]'"),
            "bnb4": ("bitsandbytes", "pip install 'bitsandbytes>=0.45'")}
GROUP_SIZES = (32, 64, 128)  # the int4 group sizes vLLM's Marlin kernels serve


KIND = "quantize"  # the `kind` a stage config names in YAML


@dataclass
class QuantizeStageConfig:
    """`conf/stage/quantize.yaml`. ignore: regular expressions over module names (matched from the start of the
    name, as `re.match`) of the layers kept unquantized."""

    kind: str = KIND
    scheme: str = "awq_w4a16"
    task: str = "structured"
    data: str | None = None
    calibration_pages: int = 128
    min_calibration_pages: int = 32
    max_seq_length: int = 8192
    group_size: int = 128
    ignore: list[str] = field(default_factory=lambda: [r".*visual\..*", r"(.*\.)?lm_head"])

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {list(SCHEMES)}, got {self.scheme!r}")
        if self.task not in ("structured", "plain"):
            raise ValueError(f"task must be 'structured' or 'plain', got {self.task!r}")
        if self.group_size not in GROUP_SIZES:
            raise ValueError(f"group_size must be one of {list(GROUP_SIZES)}, got {self.group_size}")
        if not 1 <= self.min_calibration_pages <= self.calibration_pages:
            raise ValueError("need 1 <= min_calibration_pages <= calibration_pages")
        for pattern in self.ignore:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"ignore pattern {pattern!r} is not a regular expression ({error})") from None


class QuantizeStage(Stage):
    """Post-training quantization for serving: AWQ W4A16 (calibrated on the stage's pages), FP8 or NF4, the vision
    tower and LM head kept in 16 bits; its output is evaluated and gated like any stage. Config keys as
    `stages.NAME` in YAML (conf/stage/quantize.yaml)."""
    kind = KIND
    config_class = QuantizeStageConfig

    def __init__(self, name: str, config: QuantizeStageConfig | dict | None = None):
        self.name = name
        self.config = stage_config(name, config, QuantizeStageConfig)

    def check(self) -> None:
        """The scheme's library must be installed: checked before the run trains anything."""
        import importlib.util

        module, install = PACKAGES[self.config.scheme]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"stage {self.name}: scheme {self.config.scheme} needs the {module} package: {install}")

    def own_pages(self) -> str | None:
        """Its own pages (`data`), or None for the run's."""
        return self.config.data

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        """Quantization is one process's work: in a multi-GPU run rank 0 quantizes and the others wait for its result."""
        return distributed.on_main(self._run, model, pages, output_dir, context)

    def _run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        from dharma_train.models.loading import load_model, load_processor
        from dharma_train.training.saving import write_stage_record

        cfg = self.config
        drop_library_notices()  # a stage run on its own is as quiet as in a pipeline
        check_quantizable(model, self.name)
        if cfg.scheme == "awq_w4a16":
            check_group_size(model, cfg.group_size, self.name)
        calibration = self._calibration_pages(pages)
        processor = load_processor(model.processor_location, context.model.min_pixels, context.model.max_pixels)
        dtype = context.trainer.model_dtype()
        target = output_dir / "model"
        started = time.perf_counter()

        def write(tmp: Path) -> None:
            if cfg.scheme == "bnb4":
                _bnb4(model, processor, tmp, cfg.ignore, dtype, context)
                return
            # Stock vision attention: llm-compressor traces the model, and the vision tower stays in 16 bits anyway.
            network = load_model(model, dtype=dtype, settings=replace(context.model, vision_attention="stock"))
            with distributed.hidden_process_group():  # rank 0 quantizes alone (see run)
                _llm_compressor(network, processor, calibration, tmp, cfg)

        with one_bar(f"quantizing {self.name} ({cfg.scheme})", follow=_calibrated_layers):
            write_folder_atomically(target, write, needed_bytes=model.weights_bytes())  # synced, then renamed
        seconds = time.perf_counter() - started
        artifact = ModelArtifact(path=str(target))
        metrics = {"scheme": cfg.scheme, "calibration_pages": len(calibration), "quantize_seconds": seconds,
                   "input_weights_bytes": model.weights_bytes(), "output_weights_bytes": artifact.weights_bytes()}
        write_stage_record(output_dir, {"name": self.name, "kind": self.kind, "input": model.to_dict(),
                                        "output": artifact.to_dict(), "config": asdict(cfg), "metrics": metrics})
        return StageResult(self.name, artifact, metrics)

    def check_pages(self, pages: PageSet) -> None:
        """Too few calibration pages for a calibrated scheme stops the run at its start, not after its training."""
        cfg, key = self.config, f"stages.{self.name}"
        if cfg.scheme in CALIBRATED and len(pages) < cfg.min_calibration_pages:
            others = ", ".join(scheme for scheme in SCHEMES if scheme not in CALIBRATED)
            raise DataError(f"stage {self.name}: {len(pages)} calibration pages in {pages.root}, {cfg.scheme} needs at "
                            f"least {cfg.min_calibration_pages} ({key}.min_calibration_pages): give it more pages "
                            f"({key}.data=FOLDER, or data.synthetic.train_pages), lower {key}.min_calibration_pages, "
                            f"or choose a scheme without calibration ({key}.scheme={others})")

    def _calibration_pages(self, pages: PageSet) -> list:
        """The first `calibration_pages` pages (none for a scheme without calibration)."""
        cfg = self.config
        if cfg.scheme not in CALIBRATED:
            return []
        self.check_pages(pages)
        return pages.pages[: cfg.calibration_pages]


def check_quantizable(model: ModelArtifact, stage: str) -> None:
    """Merged, full-precision Qwen2.5-VL weights in a local folder; anything else is refused before loading."""
    from dharma_train.models.quantized import quantization_method

    if model.is_adapter:
        raise ConfigError(f"stage {stage}: its input {model.path} is a LoRA adapter, not merged weights; save the "
                          f"previous stage with optimization.save=merged")
    config_file = Path(model.path) / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"stage {stage}: its input {model.path} is not a local model folder with a config.json")
    method = quantization_method(model.path)
    if method is not None:
        raise ConfigError(f"stage {stage}: its input {model.path} is already quantized ({method})")
    architectures = json.loads(config_file.read_text()).get("architectures") or []
    if not set(architectures) & set(SUPPORTED_ARCHITECTURES):
        raise ConfigError(f"stage {stage}: architecture {architectures} of {model.path} is not supported; "
                          f"quantization supports {list(SUPPORTED_ARCHITECTURES)}")


def check_group_size(model: ModelArtifact, group_size: int, stage: str) -> None:
    """Every language linear's input width must split into whole groups; checked before the model loads."""
    config = json.loads((Path(model.path) / "config.json").read_text())
    text = config.get("text_config") or config
    widths = {key: text.get(key) for key in ("hidden_size", "intermediate_size") if text.get(key)}
    uneven = {key: width for key, width in widths.items() if width % group_size}
    if uneven:
        raise ConfigError(f"stage {stage}: group_size {group_size} does not divide {uneven} of {model.path}; "
                          f"choose one of {[g for g in GROUP_SIZES if all(w % g == 0 for w in widths.values())]}")


def _llm_compressor(network, processor, pages: list, target: Path, cfg: QuantizeStageConfig) -> None:
    """AWQ (calibrated on the pages) or FP8 through llm-compressor's oneshot, saved compressed with the processor."""
    from llmcompressor import oneshot

    ignore = [f"re:{pattern}" for pattern in cfg.ignore]
    if cfg.scheme == "awq_w4a16":
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier

        # llm-compressor's W4A16 preset with the group size made a setting.
        weights = QuantizationArgs(num_bits=4, type="int", strategy="group", group_size=cfg.group_size,
                                   symmetric=True, dynamic=False)
        recipe = [AWQModifier(), QuantizationModifier(
            config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=weights)}, ignore=ignore)]
        data = {"dataset": calibration_loader(pages, processor, cfg.task),
                "sequential_targets": ["Qwen2_5_VLDecoderLayer"], "max_seq_length": cfg.max_seq_length}
    else:
        from llmcompressor.modifiers.quantization import QuantizationModifier

        recipe, data = QuantizationModifier(targets=["Linear"], scheme="FP8_DYNAMIC", ignore=ignore), {}
    with _no_pinning_without_accelerator():
        oneshot(model=network, processor=processor, recipe=recipe, **data)
    network.save_pretrained(target, save_compressed=True)
    processor.save_pretrained(target)
    _ignore_under_both_names(target, ignore)


CALIBRATING = re.compile(r"^\((\d+)/(\d+)\): Calibrating")  # llm-compressor's sequential pipeline, per layer group


def _calibrated_layers(bar, description: str) -> None:
    """The stage's bar follows llm-compressor's silenced "(3/5): Calibrating" bars: 2 of 5 layer groups done."""
    found = CALIBRATING.match(description)
    if found:
        done, total = int(found.group(1)) - 1, int(found.group(2))
        bar.total, bar.unit = total, "layer group"
        bar.update(done - bar.n)


def calibration_loader(pages: list, processor, task: str):
    """One page per batch: image, prompt and the page's answer, encoded as the model sees them in training."""
    import torch
    from PIL import Image

    from dharma_train.data.prompts import prompt_messages, target_text

    def encode(page):
        messages = prompt_messages(task) + [
            {"role": "assistant", "content": [{"type": "text", "text": target_text(page.answer, task)}]}]
        text = processor.tokenizer.apply_chat_template(messages, tokenize=False)
        with Image.open(page.image) as image:
            return dict(processor(images=[image.convert("RGB")], text=[text], return_tensors="pt"))

    return torch.utils.data.DataLoader(pages, batch_size=1, collate_fn=lambda batch: encode(batch[0]))


@contextlib.contextmanager
def _no_pinning_without_accelerator():
    """llm-compressor 0.14's AWQ pins cached activations (`Tensor.pin_memory`), which raises where torch sees no
    accelerator. Pinning only speeds host-to-GPU copies, so on such a machine it is skipped."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        yield
        return
    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original


def _ignore_under_both_names(target: Path, patterns: list[str]) -> None:
    """llm-compressor writes the ignored layers under the checkpoint's names (`visual.blocks.0...`), which
    transformers 5 does not map back to its module names (`model.visual.blocks.0...`) when it loads: without the
    patterns as well, loading would wrap the 16-bit vision tower as quantized and lose its weights."""
    config_file = target / "config.json"
    config = json.loads(config_file.read_text())
    ignore = config["quantization_config"].get("ignore") or []
    config["quantization_config"]["ignore"] = ignore + [p for p in patterns if p not in ignore]
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _bnb4(model: ModelArtifact, processor, target: Path, ignore: list[str], dtype: str,
          context: StageContext) -> None:
    """NF4 weights quantized by bitsandbytes as transformers loads the model, then saved in 4 bits."""
    import torch
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    from dharma_train.models.loading import DTYPES

    compute = DTYPES[dtype]
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                                      llm_int8_skip_modules=list(ignore))
    device = context.trainer.resolved_device()
    network = AutoModelForImageTextToText.from_pretrained(model.path, dtype=compute, quantization_config=quantization,
                                                          device_map=device)
    network.save_pretrained(target)
    processor.save_pretrained(target)
    del network
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
