"""'Did you mean ...?' for a misspelled key, recipe or stage: close spellings and other trainers' names."""

from __future__ import annotations

import difflib

# Names users bring from TRL, transformers' TrainingArguments, LLaMA-Factory and axolotl -> dharma_train's leaf key.
ALIASES = {
    "lr": "learning_rate", "learningrate": "learning_rate",
    "num_train_epochs": "epochs", "num_epochs": "epochs", "epoch": "epochs",
    "per_device_train_batch_size": "batch_size", "micro_batch_size": "batch_size", "train_batch_size": "batch_size",
    "bs": "batch_size", "batchsize": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation", "grad_accum": "gradient_accumulation",
    "warmup_ratio": "warmup", "warmup_steps": "warmup",
    "lr_scheduler_type": "lr_scheduler", "scheduler": "lr_scheduler",
    "lora_r": "r", "lora_rank": "r", "rank": "r", "lora_alpha": "alpha", "lora_dropout": "dropout",
    "lora_target": "target_modules", "finetuning_type": "method", "adapter": "method",
    "output": "output_dir", "out": "output_dir", "save_dir": "output_dir",
    "model_name_or_path": "path", "base_model": "path", "model_name": "path",
    "max_new_tokens": "max_new_tokens", "bf16": "precision", "fp16": "precision", "dtype": "precision",
    "load_in_4bit": "lora_4bit", "qlora": "lora_4bit", "gradient_checkpointing": "gradient_checkpointing",
}


def close_names(name: str, candidates: list[str], limit: int = 3) -> list[str]:
    """Candidates spelled like `name`, or the one its alias from another trainer stands for."""
    wanted = ALIASES.get(name.lower())
    exact = [c for c in candidates if c == wanted]
    near = difflib.get_close_matches(name, candidates, n=limit, cutoff=0.7)
    return list(dict.fromkeys(exact + near))[:limit]


def close_paths(path: str, known_paths: list[str], limit: int = 3) -> list[str]:
    """Known dotted keys `path` may have meant: its first unknown part respelled among its siblings
    (`stages.strucured.x` -> `stages.structured.x`), else known keys ending in a part spelled like its last."""
    known = set(known_paths)
    parts = path.split(".")
    depth = next((i for i in range(len(parts)) if ".".join(parts[: i + 1]) not in known), len(parts))
    if depth == len(parts):  # the whole key is known: whatever went wrong, it was not its spelling
        return []
    prefix = ".".join(parts[:depth])
    siblings = sorted({k[len(prefix) + 1:].split(".")[0] if prefix else k.split(".")[0]
                       for k in known if not prefix or k.startswith(prefix + ".")})
    respelled = [".".join([*parts[:depth], name, *parts[depth + 1:]]) for name in close_names(parts[depth], siblings)]
    found = [candidate for candidate in respelled if candidate in known]
    if found:
        return found[:limit]
    leaves: dict[str, list[str]] = {}
    for name in sorted(known):
        leaves.setdefault(name.rpartition(".")[2], []).append(name)
    matches = [name for leaf in close_names(parts[-1], sorted(leaves), limit) for name in leaves[leaf]]
    matches.sort(key=lambda name: not name.startswith(prefix + ".") if prefix else False)  # same branch first
    return matches[:limit]


def flat_keys(values, prefix: str = "") -> list[str]:
    """Every dotted key of a nested dict, inner nodes included."""
    keys = []
    for name, value in (values.items() if isinstance(values, dict) else []):
        path = f"{prefix}.{name}" if prefix else str(name)
        keys += [path, *flat_keys(value, path)]
    return keys


def did_you_mean(suggestions: list[str]) -> str:
    """' (did you mean a? or b, c)' or '' when there is nothing close."""
    if not suggestions:
        return ""
    rest = f" or {', '.join(suggestions[1:])}" if len(suggestions) > 1 else ""
    return f" (did you mean {suggestions[0]}?{rest})"
