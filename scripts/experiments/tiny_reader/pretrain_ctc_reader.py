"""Teach a random-init Qwen2.5-VL to read with a CTC signal on its vision tower, lines first, resumable call by call.

Issue 29, item 2 (docs/experiments/tiny-reader.md). Phases, each `kind:steps`, in order:
- `ctc`: single 448x28 lines, the vision tower and the CTC head alone (the image is the only way down);
- `line`: single lines, the language model reads them (next-token loss) while the CTC loss stays on at
  `--ctc-weight`;
- `lines`: two to four lines on a 448x112 strip, each in its own 28 px band (CTC per band), read top to bottom;
- `page`: short readable pages (`dharma_train.data.synthetic.readable`), plain transcription, every other step a
  `lines` batch so the CTC loss stays on;
- `json`: the same pages answered in the `{header, margin, footer, text}` JSON, every other step a `lines` batch.
A run stops after `--max-minutes` (training and evaluation) and writes a checkpoint (`reader_checkpoint.py`)
that `--resume` continues from the saved global step, whatever phase that falls in.

Held-out score at every `--eval-every` steps and at the end: CER of greedy CTC reads and of the language model's
greedy reads of held-out lines, and of its reads of held-out readable pages per family (normalized, capped at 1
per sample); in the `json` phase also the share of pages whose output is valid schema JSON. curve.jsonl keeps it.

Hand-written loop on purpose: two losses on one forward pass (a hook on the vision tower), phases that change the
data and image size, and batches alternating between pages and lines, which TRL's trainers do not express.
Example (CPU, a minute): python -m scripts.experiments.tiny_reader.pretrain_ctc_reader --out runs/ctc --phases ctc:30,line:10 --batch 8
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

READER_SHAPE = {"num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 768, "num_attention_heads": 8,
                "num_key_value_heads": 2, "vision_depth": 4, "vision_hidden_size": 192,
                "vision_intermediate_size": 576, "vision_heads": 6, "max_pixels": 28 * 28 * 256}
FAMILIES = ("printed", "handwritten", "legal")


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for curve.jsonl, run.json, checkpoint/")
    parser.add_argument("--resume", type=Path, default=None, help="a checkpoint folder to continue from")
    parser.add_argument("--phases", default="ctc:1500,line:2500,lines:1500,line:700,page:6000,json:6000",
                        help="comma-separated kind:steps, kinds ctc|line|lines|page|json; a resumed run finds its "
                             "place in this list by its global step (the GPU calls of 2026-12-06: the default; "
                             "call 1 ran ctc:1500,line:2500,lines:2500,... to step 5,173, inside lines either way)")
    parser.add_argument("--shape", default=json.dumps(READER_SHAPE), help="JSON overrides of the tiny TINY_SHAPE")
    parser.add_argument("--batch", type=int, default=256, help="lines per batch")
    parser.add_argument("--page-batch", type=int, default=64)
    parser.add_argument("--side-kinds", default="lines,line",
                        help="page phases: the line batches taken in turn between page batches (half the steps); "
                             "single lines keep the single-line read from drifting (it did with lines alone)")
    parser.add_argument("--lr", type=float, default=5e-4, help="phases with the language model")
    parser.add_argument("--lr-ctc", type=float, default=2e-3, help="the ctc phase (vision tower and head alone)")
    parser.add_argument("--ctc-weight", type=float, default=0.3, help="CTC loss weight beside the next-token loss")
    parser.add_argument("--frames-per-column", type=int, default=3, help="CTC frames per 14 px patch column")
    parser.add_argument("--warmup", type=int, default=200, help="steps of linear warm-up at each (re)start")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-lines", type=int, default=128)
    parser.add_argument("--eval-pages", type=int, default=16, help="held-out readable pages per family")
    parser.add_argument("--workers", type=int, default=2, help="processes drawing samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop, evaluate and save after this long")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- batches
class Collate:
    """Worker side: uint8 image stack, answer ids ending in <|im_end|>, CTC targets per band (or None)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.end = tokenizer, tokenizer.convert_tokens_to_ids("<|im_end|>")

    def __call__(self, samples):
        images, answers, targets = zip(*samples)
        pixels = torch.from_numpy(np.stack([np.asarray(image.convert("L")) for image in images]))
        ids = [self.tokenizer(a, add_special_tokens=False)["input_ids"] + [self.end] for a in answers]
        return pixels, ids, None if targets[0] is None else list(targets)


def task_batches(processor, device):
    """pretrain_reader's device-side batches (patches checked against the image processor), any task's prompt."""
    from scripts.experiments.tiny_reader.pretrain_reader import DeviceBatches

    from dharma_train.data.prompts import prompt_messages

    class TaskBatches(DeviceBatches):
        task = "plain"

        def prompt_ids(self, height: int, width: int) -> torch.Tensor:
            key = (self.task, height, width)
            if key not in self.prompts:
                from PIL import Image

                prompt = self.processor.apply_chat_template(prompt_messages(self.task), add_generation_prompt=True)
                blank = Image.new("L", (width, height), 255)
                self.prompts[key] = self.processor(text=[prompt], images=[blank],
                                                   return_tensors="pt")["input_ids"][0].to(self.device)
            return self.prompts[key]

    return TaskBatches(processor, device)


def loader(kind: str, seed: str, words, batch: int, collate, workers: int):
    from scripts.experiments.tiny_reader.reader_data import Samples

    return iter(DataLoader(Samples(kind, seed, words), batch_size=batch, collate_fn=collate, num_workers=workers,
                           prefetch_factor=4 if workers else None, persistent_workers=bool(workers)))


# ---------------------------------------------------------------------------------------------------- model
def build(args, device):
    """(model, processor, head, state): a fresh model at --shape, or the --resume checkpoint."""
    from scripts.experiments.tiny_reader import reader_checkpoint
    from scripts.experiments.tiny_reader.reader_ctc import CTCHead

    from dharma_train.models.tiny import TINY_SHAPE, build_tiny_model, build_tiny_processor

    if args.resume:
        model, processor, head, state = reader_checkpoint.load(args.resume, device)
    else:
        shape = {**TINY_SHAPE, **json.loads(args.shape)}
        processor = build_tiny_processor(shape)
        model = build_tiny_model(processor.tokenizer, shape).to(device)
        head = CTCHead(shape["vision_hidden_size"], args.frames_per_column).to(device)
        state = {"step": 0, "shape": shape, "frames_per_column": args.frames_per_column, "calls": []}
    if device.type == "cuda":  # one varlen kernel per vision layer, not one sdpa call per window
        from dharma_train.models.vision_attention import use_varlen_vision_attention

        use_varlen_vision_attention(model)
    return model, processor, head, state


def phase_at(phases: list[tuple[str, int]], step: int) -> tuple[int, int]:
    """(phase index, steps already done in it) of global `step`; past the end, (len(phases), 0)."""
    for index, (_, steps) in enumerate(phases):
        if step < steps:
            return index, step
        step -= steps
    return len(phases), 0


def parameter_groups(model, head) -> dict[str, list]:
    vision = list(model.model.visual.parameters())
    vision_ids = {id(p) for p in vision}
    return {"vision": vision, "head": list(head.parameters()),
            "language": [p for p in model.parameters() if id(p) not in vision_ids]}


def phase_rates(kind: str, args) -> dict[str, float]:
    """The ctc phase trains the tower and head alone at --lr-ctc; the others everything at --lr."""
    if kind == "ctc":
        return {"vision": args.lr_ctc, "head": args.lr_ctc, "language": 0.0}
    return {"vision": args.lr, "head": args.lr, "language": args.lr}


# ---------------------------------------------------------------------------------------------------- steps
def step_loss(kind: str, parts, model, head, features, batches, args) -> tuple[torch.Tensor, dict]:
    """One batch's loss: CTC alone (ctc), or next-token plus weighted CTC where the batch has CTC targets."""
    from scripts.experiments.tiny_reader.reader_ctc import ctc_loss

    pixels, ids, targets = parts
    autocast = torch.autocast(batches.device.type, dtype=torch.bfloat16, enabled=batches.device.type == "cuda")
    if kind == "ctc":
        flat, grid = batches.pixel_values(pixels)
        with autocast:
            model.model.visual(flat, grid_thw=grid)
        loss = ctc_loss(head, features.bands(), targets)
        return loss, {"ctc": loss.item()}
    batches.task = "structured" if kind == "json" else "plain"
    with autocast:
        lm = model(**batches(pixels, ids)).loss
    if targets is None:
        return lm, {f"lm_{kind}": lm.item()}
    ctc = ctc_loss(head, features.bands(), targets)
    return lm + args.ctc_weight * ctc, {f"lm_{kind}": lm.item(), "ctc": ctc.item()}


# ---------------------------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    from scripts.experiments.tiny_reader.reader_ctc import PatchFeatures
    from scripts.experiments.tiny_reader.reader_data import draw_sample, pt_words
    from scripts.experiments.tiny_reader.reader_eval import Evaluator

    from scripts.experiments.tiny_reader.pretrain_reader import check_patches

    args = parse_arguments(argv)
    torch.manual_seed(args.seed)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    model, processor, head, state = build(args, device)
    features = PatchFeatures(model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters (+{sum(p.numel() for p in head.parameters()) / 1e6:.2f} M "
          f"CTC head) on {device}, from step {state['step']}", flush=True)
    phases = [(kind, int(steps)) for kind, steps in (part.split(":") for part in args.phases.split(","))]
    words = pt_words(args.seed)
    batches, collate = task_batches(processor, device), Collate(processor.tokenizer)
    groups = parameter_groups(model, head)
    optimizer = torch.optim.AdamW([{"params": params, "name": name} for name, params in groups.items()],
                                  lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    evaluator = Evaluator(model, processor, head, features, batches, device, args.eval_lines, args.eval_pages,
                          words, args.seed)
    curve = (args.out / "curve.jsonl").open("a")
    step, first_step, losses = state["step"], state["step"], {}
    index, done = phase_at(phases, step)

    def record(kind: str) -> None:
        point = {"step": step, "phase": kind, "seconds": round(time.monotonic() - started, 1),
                 **{name: round(sum(values) / len(values), 4) for name, values in losses.items()},
                 **evaluator(kind)}
        losses.clear()
        print(json.dumps(point), flush=True)
        curve.write(json.dumps(point) + "\n")
        curve.flush()

    try:  # a call that breaks still returns what it trained
        out_of_time = False
        while index < len(phases) and not out_of_time:
            kind, steps = phases[index]
            seed = f"{args.seed}/{step}"
            line_kind = "line" if kind == "ctc" else kind
            main_batch = args.page_batch if kind in ("page", "json") else args.batch
            paged = kind in ("page", "json")
            side_workers = max(1, args.workers // 3) if paged and args.workers else 0
            main = (kind, loader(line_kind, seed, words, main_batch, collate, args.workers - side_workers))
            streams = [main]
            if paged:  # every other step a batch of lines (--side-kinds in turn), as many as pages: CTC stays on
                sides = args.side_kinds.split(",")
                streams = [stream for side in sides for stream in (main, (side, loader(
                    side, seed, words, args.page_batch, collate, max(1, side_workers // len(sides)) if side_workers
                    else 0)))]
            check_patches(batches, processor, draw_sample(line_kind, random.Random(0), words)[0])
            rates = phase_rates(kind, args)
            for phase_step in range(done, steps):
                warm = min(1.0, (step - first_step + 1) / args.warmup)
                for group in optimizer.param_groups:
                    group["lr"] = rates[group["name"]] * warm
                batch_kind, stream = streams[phase_step % len(streams)]
                loss, parts = step_loss(batch_kind, next(stream), model, head, features, batches, args)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for params in groups.values() for p in params], 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                for name, value in parts.items():
                    losses.setdefault(name, []).append(value)
                step += 1
                out_of_time = bool(args.max_minutes) and time.monotonic() - started > args.max_minutes * 60
                if step % args.eval_every == 0 or phase_step == steps - 1 or out_of_time:
                    record(kind)
                if out_of_time:
                    break
            index, done = index + 1, 0
    finally:
        finish(args, model, processor, head, state, evaluator, step, first_step, n_params, device, started)


def finish(args, model, processor, head, state, evaluator, step, first_step, n_params, device, started) -> None:
    """Save the checkpoint and run.json (the state's step and this call's record first)."""
    from scripts.experiments.tiny_reader import reader_checkpoint

    state["step"] = step
    state["calls"].append({"args": {k: str(v) for k, v in vars(args).items()}, "from_step": first_step,
                           "to_step": step, "seconds": round(time.monotonic() - started, 1),
                           "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"})
    reader_checkpoint.save(args.out / "checkpoint", model, processor, head, state)
    (args.out / "run.json").write_text(json.dumps({"parameters": n_params, "state": state,
                                                   "samples": evaluator.samples()}, indent=2, ensure_ascii=False))
    print(f"saved step {step} to {args.out / 'checkpoint'}", flush=True)


if __name__ == "__main__":
    main()
