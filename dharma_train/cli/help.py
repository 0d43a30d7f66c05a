"""`python -m dharma_train --help` and `--version`: what it does, how to call it, the recipes; no torch import."""

from __future__ import annotations

from importlib import metadata

from dharma_train.config_files import recipe_names, recipes_dir

STAGE_KINDS = {
    "sft": "supervised fine-tuning on pages (LoRA or full): general OCR, structured JSON or plain text",
    "dpo": "preference optimization against the model's own failures (loops, invalid JSON, schema errors)",
    "grpo": "GRPO on sampled answers rewarded by the evaluation's measures: schema, 1 - CER, loops, length",
    "quantize": "AWQ 4-bit weights (W4A16) with llm-compressor, calibrated on the training pages",
    "export": "a standalone model folder with a model card (optionally pushed to the Hub)",
}

HELP_WIDTH = 114  # columns: the widest entries already there fit
USAGE = """\
usage: python -m dharma_train [RECIPE.yaml | recipe=NAME] [key=value ...]
       python -m dharma_train plan [RECIPE.yaml | recipe=NAME] [key=value ...]
       python -m dharma_train env | --version | --help
       (installed as `dharma-train`, with the same arguments)"""


def version() -> str:
    """dharma_train's own version, as installed."""
    try:
        return metadata.version("dharma_train")
    except metadata.PackageNotFoundError:
        from dharma_train import __version__

        return __version__


def recipe_summary(name: str) -> str:
    """A recipe's first sentence, without its name: 'the whole ladder on the tiny model, on a CPU'. The sentence may
    run over the comment's continuation lines (indented): it is read to its end, never cut at a line's."""
    text = _first_comment_paragraph((recipes_dir() / f"{name}.yaml").read_text(encoding="utf-8"))
    text = text.split(":", 1)[1].strip() if text.startswith(f"{name}:") else text
    return text.split(". ")[0].rstrip(".")


def _first_comment_paragraph(yaml_text: str) -> str:
    """The first comment line and the indented comment lines that continue it, joined into one line."""
    lines = []
    for line in yaml_text.splitlines():
        if not line.startswith("#") or (lines and not line.startswith("#  ")):
            break
        lines.append(line.lstrip("# ").strip())
    return " ".join(filter(None, lines))


def _wrapped(name: str, summary: str) -> list[str]:
    """A recipe's help entry, its summary wrapped under itself rather than cut."""
    import textwrap

    return textwrap.wrap(f"{name:<15} {summary}", width=HELP_WIDTH, initial_indent="  ",
                         subsequent_indent=" " * 18)


def help_text() -> str:
    recipes = [line for name in recipe_names() for line in _wrapped(name, recipe_summary(name))]
    kinds = [f"  {kind:<15} {text}" for kind, text in STAGE_KINDS.items()]
    return "\n".join([
        f"dharma_train {version()}: turn a Qwen2.5-VL model into a document-OCR specialist, one measured stage at",
        "a time (SFT, DPO, AWQ quantization, export), evaluated on the base and after every stage.",
        "", USAGE, "",
        "commands:",
        "  (none)          validate the configuration, then run every stage of the recipe",
        "  plan            validate and print the plan (stages reused or re-run and why, pages, model, memory",
        "                  floor); trains nothing, writes nothing; exit 2 if the run would be refused",
        "  env             versions, devices and optional packages, for bug reports",
        "",
        "examples:",
        "  python -m dharma_train                                    the tiny recipe, offline, on a CPU",
        "  python -m dharma_train plan recipe=nanonets_3b            what the Nanonets recipe would do here",
        "  python -m dharma_train my_recipe.yaml output_dir=runs/a   a recipe file of your own",
        "  python -m dharma_train recipe=tiny '~stages.dpo' '~stages.quantize'   a subset of stages",
        "  python -m dharma_train recipe=tiny stages.structured.optimization.learning_rate=1e-4",
        "  python -m dharma_train recipe=tiny data.synthetic.train_pages=8 data.synthetic.eval_pages=4 \\",
        "      data.synthetic.general_pages=8 stages.general_ocr.optimization.max_steps=2 \\",
        "      stages.structured.optimization.max_steps=2 stages.dpo.optimization.max_steps=2   a quick smoke run",
        "",
        "recipes (recipe=NAME):", *recipes,
        "",
        "stage kinds (stages.NAME.kind):", *kinds,
        "",
        "outputs: output_dir (default outputs/NAME/DATE_TIME) holds report.md, summary.json, run.json, the",
        "  pages under data/, and one NN_STAGE/ folder per stage with its model/. Re-running the same command into",
        "  the same output_dir reuses finished stages and resumes an interrupted one.",
        "",
        "Any key can be overridden as key=value (docs/configuration.md lists them). Hydra's own options still",
        "work: --cfg job (the composed config), --multirun, --config-dir DIR, --hydra-help.",
    ])
