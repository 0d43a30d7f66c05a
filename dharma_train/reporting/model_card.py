"""The exported model's README.md: what it was trained on, how, what each stage measured, and how to run it.

Every number in the card is read from the run's summary.json (the evaluation hook's output), never typed in.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path

from dharma_train.config_files import recipe_names
from dharma_train.data.pages import PageSet
from dharma_train.data.prompts import PROMPTS
from dharma_train.errors import DataError
from dharma_train.files import read_json_or_none
from dharma_train.gate import Verdict
from dharma_train.models.config import EMBEDDED
from dharma_train.run_paths import run_resolved
from dharma_train.reporting.report import QUALITY, SPEED, reward_table
from dharma_train.reporting.run_record import run_provenance

CARD_QUALITY = [row for row in QUALITY if row[1] in ("quality_score", "paper_score", "cer", "wer", "json_valid_rate",
                                                     "schema_valid_rate", "degeneration_rate")]
CARD_SPEED = [row for row in SPEED if row[1] in ("pages_per_second", "new_tokens_per_second",
                                                 "cost_per_million_pages", "weights_megabytes", "peak_memory_gib",
                                                 "decode_backend")]
log = logging.getLogger(__name__)

PACKAGES = ("dharma_train", "torch", "transformers", "peft", "trl", "llmcompressor", "compressed-tensors",
            "bitsandbytes")


@dataclass(frozen=True)
class RunRecords:
    """What the card says about the run, read from its files before the export writes anything."""

    summary: dict | None
    stages: list[dict]
    provenance: dict


def run_records(summary_file: Path, run_dir: Path) -> RunRecords:
    """The run's summary, each stage's record and its provenance. A summary that cannot be read stops in one line
    naming it; a damaged stage.json is derived data: that stage's name, kind and config come from its manifest
    instead, with one warning."""
    stages = [record for path in sorted(run_dir.glob("[0-9][0-9]_*/stage.json"))
              if (record := stage_record(path)) is not None]
    return RunRecords(read_summary(summary_file), stages, run_provenance(run_dir))


def read_summary(summary_file: Path) -> dict | None:
    """A run's summary.json for the card (None when there is none); one that cannot be read is one DataError line."""
    if not summary_file.is_file():
        return None
    summary = read_json_or_none(summary_file)
    if not isinstance(summary, dict) or not isinstance(summary.get("entries", []), list):
        raise DataError(f"{summary_file} cannot be read (not a summary.json object): the model card's evaluation "
                        f"comes from it; run the same command again to rewrite the run's own, or fix the file "
                        f"the export stage's `summary` names")
    return run_resolved(summary, summary_file.parent)


def stage_record(path: Path) -> dict | None:
    """One stage.json as the run wrote it, or, damaged, the same facts from the stage's manifest (None: neither)."""
    from dharma_train.manifest import read_manifest

    record = read_json_or_none(path)
    if isinstance(record, dict) and isinstance(record.get("name"), str) and isinstance(record.get("kind"), str):
        return run_resolved(record, path.parent.parent)
    manifest = read_manifest(path.parent)
    shown = Path(path.parent.name) / path.name
    if manifest is None:
        log.warning("%s is damaged and its stage has no manifest: the model card leaves that stage out", shown)
        return None
    log.warning("%s is damaged: the model card takes that stage's name, kind and config from its manifest", shown)
    return {"name": manifest["point"], "kind": manifest["kind"], "config": manifest["inputs"].get("config", {})}


def card_for_run(records: RunRecords, pages: PageSet, run_name: str, model_dir: Path,
                 repo_id: str | None = None) -> str:
    """The card from the run's records (read before the export: run_records) and the exported model's config."""
    config = json.loads((model_dir / "config.json").read_text())
    families = Counter(page.family for page in pages)
    return render_card(records.summary, records.stages, families, run_name, config.get("quantization_config"),
                       repo_id or str(model_dir.resolve()), library_versions(), on_hub=repo_id is not None,
                       provenance=records.provenance)


def render_card(summary: dict | None, stages: list[dict], families: dict[str, int], run_name: str,
                quantization: dict | None, location: str, versions: dict[str, str], on_hub: bool = False,
                provenance: dict | None = None) -> str:
    """Markdown with Hub metadata: use, evaluation per stage, data families, recipe, quantization, software."""
    entries = (summary or {}).get("entries", [])
    settings = (summary or {}).get("evaluation", {})
    base = entries[0]["model"] if entries else None
    final = _final_entry(summary, entries)
    task = settings.get("task", "structured")
    lines = ["---", _metadata(base, quantization).rstrip(), "---", "",
             f"# {location.split('/')[-1] if on_hub else run_name}: document OCR (dharma_train recipe `{run_name}`)", "",
             f"Trained from `{base}` by dharma_train, evaluated after every stage: "
             + " → ".join(f"{e['stage']} ({e['kind']}{', skipped' if Verdict.of(e).reason else ''})" for e in entries[1:])
             + ".", "",
             "## Use", "", *_usage(location, task, quantization, settings.get("max_new_tokens") or 2048), "",
             "## Evaluation", ""]
    if entries:
        lines += [f"Measured by the run itself after every stage on the same {entries[0]['metrics'].get('pages', 0)} "
                  f"held-out pages (task `{task}`, greedy, at most {settings.get('max_new_tokens')} new tokens per "
                  f"page). Quality is 0.8 × the DharmaOCR paper score + 0.2 × structure; degeneration is the share "
                  f"of looping answers.", ""]
        lines += _table(["point", "kind", "gate"] + [h for h, _, _ in CARD_QUALITY],
                        [[e["stage"], e["kind"], Verdict.of(e).outcome]
                         + [_cell(e["metrics"], k, f) for _, k, f in CARD_QUALITY] for e in entries])
        lines += ["", *_gate_sentence(entries, final)]
        header, rows = reward_table(entries)
        if rows:
            lines += ["", "GRPO's rewards (each term's mean over the sampled answers, first → last logged step; "
                      "groups whose answers all scored the same were skipped):", ""] + _table(header, rows)
        lines += ["", f"Speed on the evaluating machine, cost at ${settings.get('price_per_hour', 0):.2f} per hour:",
                  ""]
        lines += _table(["point"] + [h for h, _, _ in CARD_SPEED],
                        [[e["stage"]] + [_cell(e["metrics"], k, f) for _, k, f in CARD_SPEED] for e in entries])
    else:
        lines += ["No evaluation was recorded for this export (no summary.json was found)."]
    provenance = provenance or {}
    lines += ["", "## Training data", ""]
    if provenance.get("sources"):
        lines += ["Sources: " + "; ".join(provenance["sources"]) + ".", ""]
    lines += [f"- `{family}`: {count} pages" for family, count in sorted(families.items())] or ["- (none recorded)"]
    if provenance.get("loaded"):
        lines += ["", "Rows checked by the loader (skipped rows are listed by id in the run's load_report.json):",
                  ""] + [f"- {line}" for line in provenance["loaded"]]
    last = final["metrics"].get("by_family", {}) if final else {}
    if last:
        lines += ["", f"Quality of the exported point ({final['stage']}) per family:", ""]
        lines += _table(["family", "pages", "quality", "CER", "degeneration"],
                        [[f, str(m.get("pages", "")), _cell(m, "quality_score", "{:.3f}"), _cell(m, "cer", "{:.3f}"),
                          _cell(m, "degeneration_rate", "{:.1%}")] for f, m in sorted(last.items())])
    if provenance.get("command"):
        how = f"`{provenance['command']}`"
    else:
        how = (f"`python -m dharma_train recipe={run_name}`" if run_name in recipe_names()
               else f"the pipeline `{run_name}`")
    lines += ["", "## Recipe", "", f"Made by {how}; each stage's resolved configuration:", ""]
    for stage in stages:
        lines += [f"<details><summary>{stage['name']} ({stage['kind']})</summary>", "", "```json",
                  json.dumps(stage.get("config", {}), indent=1), "```", "</details>", ""]
    if quantization:
        lines += ["## Quantization", "", _quantization_text(quantization), ""]
    lines += ["## Software", "", ", ".join(f"{name} {version}" for name, version in versions.items())
              + f"; card written {date.today().isoformat()}.", ""]
    return "\n".join(lines)


def library_versions() -> dict[str, str]:
    """Installed versions of the packages that made or load the model."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _metadata(base: str | None, quantization: dict | None) -> str:
    from huggingface_hub import ModelCardData

    tags = ["dharma_train", "ocr", "document-ocr", "qwen2.5-vl"]
    if quantization:
        tags.append(quantization.get("quant_method", "quantized"))
    hub_base = base if base and base not in EMBEDDED and not Path(base).exists() and base.count("/") == 1 else None
    return ModelCardData(library_name="transformers", pipeline_tag="image-text-to-text", tags=tags,
                         base_model=hub_base).to_yaml()


def _usage(location: str, task: str, quantization: dict | None, max_new_tokens: int) -> list[str]:
    """The evaluation's own inputs (evaluation/generate.py) in plain transformers, no torchvision: AutoProcessor
    would load Qwen2-VL's video processor, which needs it. `mm_token_type_ids` marks the image tokens: without it
    transformers gives them 1-D text positions instead of Qwen2.5-VL's M-RoPE ones, and the answer changes."""
    needs = {"compressed-tensors": " (needs `pip install compressed-tensors`; vLLM serves it directly)",
             "bitsandbytes": " (needs `pip install bitsandbytes`)"}.get((quantization or {}).get("quant_method"), "")
    return [f"Plain transformers{needs}, no torchvision needed (where torchvision is installed, "
            "`AutoProcessor.from_pretrained` gives the same inputs in one object). These are the inputs the "
            "evaluation below gave the model, so the answer is the evaluated one:", "", "```python",
            "from PIL import Image",
            "from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessorPil", "",
            f'folder = "{location}"  # this card\'s folder (or its Hub repo id); change it if you move the folder',
            'model = AutoModelForImageTextToText.from_pretrained(folder, dtype="auto", device_map="auto")',
            "tokenizer = AutoTokenizer.from_pretrained(folder)",
            "images = Qwen2VLImageProcessorPil.from_pretrained(folder)",
            f'messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": {PROMPTS[task]!r}}}]}}]',
            "prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)",
            'pixels = images(images=[Image.open("page.png").convert("RGB")], return_tensors="pt")',
            'image_tokens = int(pixels["image_grid_thw"].prod()) // images.merge_size**2  # one per merged patch',
            'text = tokenizer([prompt.replace("<|image_pad|>", "<|image_pad|>" * image_tokens)], return_tensors="pt")',
            '# 1 marks an image token: Qwen2.5-VL gives those its 3-D (M-RoPE) positions only when told which they are',
            'text["mm_token_type_ids"] = (text["input_ids"] == tokenizer.convert_tokens_to_ids("<|image_pad|>")).long()',
            "inputs = {name: value.to(model.device) for name, value in {**text, **pixels}.items()}",
            f"answer = model.generate(**inputs, max_new_tokens={max_new_tokens}, do_sample=False,",
            "                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)",
            'print(tokenizer.decode(answer[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))', "```"]


def _quantization_text(quantization: dict) -> str:
    method = quantization.get("quant_method")
    if method == "compressed-tensors":
        groups = quantization.get("config_groups", {})
        weights = [g.get("weights") or {} for g in groups.values()]
        schemes = ", ".join(f"{w.get('num_bits')}-bit {w.get('type')} weights ({w.get('strategy')}"
                            + (f" {w['group_size']}" if w.get("group_size") else "") + ")" for w in weights)
        kept = [p for p in quantization.get("ignore", []) if p.startswith("re:")]
        return f"compressed-tensors checkpoint: {schemes}; kept in 16 bits: {', '.join(kept) or 'none'}."
    if method == "bitsandbytes":
        return (f"bitsandbytes {quantization.get('bnb_4bit_quant_type', '')} 4-bit weights; kept in 16 bits: "
                f"{', '.join(quantization.get('llm_int8_skip_modules') or []) or 'none'}.")
    return f"{method} checkpoint."


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _cell(metrics: dict, key: str, fmt: str) -> str:
    value = metrics.get(key)
    return "" if value is None else fmt.format(value)


def _final_entry(summary: dict | None, entries: list[dict]) -> dict | None:
    """The point that produced the exported weights: the stage gate's best (else the last point), or, where that
    stage passed its input on (an older summary.json names it), the last point before it that trained."""
    name = (summary or {}).get("final_point")
    final = next((e for e in entries if e["stage"] == name), entries[-1] if entries else None)
    if final is None or not Verdict.of(final).reason:
        return final
    before = entries[: entries.index(final)]
    return next((e for e in reversed(before) if Verdict.of(e).outcome not in ("skipped", "rejected")), final)


def _gate_sentence(entries: list[dict], final: dict | None) -> list[str]:
    """Which stages the run kept, skipped and rejected (neither a skipped nor a rejected stage changed this model)."""
    rejected = [e for e in entries if Verdict.of(e).outcome == "rejected"]
    skipped = [e for e in entries if Verdict.of(e).outcome == "skipped"]
    kept = [e["stage"] for e in entries[1:] if e not in rejected + skipped]
    text = f"Stages kept: {', '.join(kept) or 'none'}."
    if skipped:
        text += (" Skipped (passed its input on untrained, so its row repeats the point before it): "
                 + "; ".join(f"{e['stage']} ({Verdict.of(e).reason})" for e in skipped) + ".")
    if rejected:
        text += " Rejected by the stage gate (worse than the point before on its criteria, so not in this model): "
        text += "; ".join(f"{e['stage']} ({', '.join(Verdict.of(e).regressions)})" for e in rejected) + "."
    return [text + (f" These weights are those of `{final['stage']}`." if final else "")]

