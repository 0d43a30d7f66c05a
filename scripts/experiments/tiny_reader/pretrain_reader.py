"""Teach a random-init tiny Qwen2.5-VL to read generated text, phase by phase, and log the reading curve.

The experiment of issue 22 (docs/experiments/tiny-reader.md). The model is the embedded tiny model's architecture
(`dharma_train.models.tiny`, its offline tokenizer and processor) at a shape given on the command line, so every
stage of the library applies to the result unchanged. A curriculum of phases, each `kind:steps`:

- `glyph`: one large character (letter or digit, 34-42 px) on a 56 x 56 image (four vision tokens): whether the
  image reaches the answer at all;
- `chars`: one short random string (letters, digits, punctuation: no language prior to lean on) in large type
  on a one-token-high strip;
- `words`: one to three Portuguese words or random strings, large type, same strip;
- `lines`: two to four lines at page type size (9-13 px) on a 224 x 56 crop;
- `pages`: the project's own generated pages (`generate_pages`) at the default recipe's size, plain transcription.

Levers, each a flag: `--random-fraction` (share of random strings in the word phases, against the pt-BR prior),
`--vision-lr-scale` (the vision tower's learning rate over the rest), the phases themselves (curriculum or not).
The held-out score after every `--eval-every` steps is the normalized CER of greedy transcriptions of generated
pages at the default size (printed, handwritten, legal) and of the current phase's crops; curve.jsonl keeps it.

Hand-written loop on purpose: the phases change the data every few hundred steps and evaluation is a greedy read
of held-out crops, which TRL's trainers would need callbacks and a dataset per phase for.
Example (CPU, a few minutes): python -m scripts.experiments.tiny_reader.pretrain_reader --out runs/reader --phases words:300 --batch 16
"""

from __future__ import annotations

import argparse
import json
import math
import random
import string
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dharma_train.data.prompts import prompt_messages
from dharma_train.data.synthetic import fonts
from dharma_train.data.synthetic.generate import generate_pages
from dharma_train.data.synthetic.text import make_answer
from dharma_train.evaluation.metrics import character_error_rate
from dharma_train.models.tiny import TINY_SHAPE, build_tiny_model, build_tiny_processor

TASK = "plain"
RANDOM_ALPHABET = string.ascii_letters + string.digits + "áàâãéêíóôõúçÁÉÍÓÚÇ.,;:-/()$%"
STRIP = (224, 28)   # one merged vision token high: 8 tokens of 28 x 28 px
CROP = (224, 56)    # two token rows
ROLES = ("serif", "sans", "italic", "bold", "mono")


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for curve.jsonl, run.json and model/")
    parser.add_argument("--work", type=Path, default=None, help="folder for generated pages (default: --out)")
    parser.add_argument("--phases", default="glyph:600,chars:2000,words:2000,lines:2000,pages:2000",
                        help="comma-separated kind:steps, kinds glyph|chars|words|lines|pages")
    parser.add_argument("--shape", default="{}", help="JSON overrides of dharma_train.models.tiny.TINY_SHAPE")
    parser.add_argument("--init", type=Path, default=None, help="start from this saved model folder (a previous call)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4, help="2e-3 and above: it cannot even memorize 8 glyphs")
    parser.add_argument("--vision-lr-scale", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--random-fraction", type=float, default=0.5, help="random strings among words/chars")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--eval-pages", type=int, default=24, help="held-out default-size pages per evaluation")
    parser.add_argument("--eval-crops", type=int, default=32, help="held-out crops of the current phase")
    parser.add_argument("--page-pool", type=int, default=2048, help="generated training pages for the pages phase")
    parser.add_argument("--workers", type=int, default=2, help="processes drawing training samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this long")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- samples
def random_string(rng: random.Random, low: int = 3, high: int = 10) -> str:
    return "".join(rng.choice(RANDOM_ALPHABET) for _ in range(rng.randint(low, high)))


def draw_text(text_lines: list[str], size: tuple[int, int], font_px: tuple[int, int], rng: random.Random) -> Image:
    """Grey ink on light paper, one font per image, lines from the top with the image's full width to use."""
    image = Image.new("L", size, rng.randint(200, 255))
    draw = ImageDraw.Draw(image)
    role = rng.choice(ROLES)
    text = " ".join(text_lines)
    face = fonts.pick_face(rng, role, text)
    px = rng.randint(*font_px)
    font = face.font(px)
    while px > 6 and max(draw.textlength(line, font=font) for line in text_lines) > size[0] - 4:
        px -= 1
        font = face.font(px)
    line_height = size[1] / len(text_lines)
    ink = rng.randint(0, 90)
    for row, line in enumerate(text_lines):
        top = row * line_height + max(0.0, (line_height - px * 1.2) / 2)
        draw.text((rng.randint(1, 4), top), line, fill=ink, font=font)
    return image


def words_sample(rng: random.Random, words: list[str], random_fraction: float, max_words: int):
    picks = [random_string(rng) if rng.random() < random_fraction else rng.choice(words)
             for _ in range(rng.randint(1, max_words))]
    text = " ".join(picks)
    return draw_text([text], STRIP, (16, 22), rng), text


def lines_sample(rng: random.Random, words: list[str], random_fraction: float):
    n_lines = rng.randint(2, 4)
    lines = []
    for _ in range(n_lines):
        line, budget = [], rng.randint(20, 40)
        while len(" ".join(line)) < budget:
            line.append(random_string(rng, 2, 7) if rng.random() < random_fraction / 2 else rng.choice(words))
        lines.append(" ".join(line))
    return draw_text(lines, CROP, (9, 13), rng), "\n".join(lines)


class PhaseSamples(IterableDataset):
    """Endless (image, answer) samples of one phase kind; each worker draws its own seeded stream."""

    def __init__(self, kind: str, seed: int, words: list[str], random_fraction: float, pages: list | None):
        self.kind, self.seed, self.words, self.random_fraction, self.pages = kind, seed, words, random_fraction, pages

    def __iter__(self):
        worker = get_worker_info()
        rng = random.Random(f"{self.seed}-{self.kind}-{worker.id if worker else 0}")
        while True:
            yield draw_sample(self.kind, rng, self.words, self.random_fraction, self.pages)


def draw_sample(kind: str, rng: random.Random, words: list[str], random_fraction: float, pages: list | None):
    if kind == "glyph":
        char = rng.choice(string.ascii_uppercase + string.digits)
        return draw_text([char], (56, 56), (34, 42), rng), char
    if kind == "chars":
        return words_sample(rng, words, 1.0, 1)
    if kind == "words":
        return words_sample(rng, words, random_fraction, 3)
    if kind == "lines":
        return lines_sample(rng, words, random_fraction)
    if kind == "pages":
        page = rng.choice(pages)
        return Image.open(page.image).convert("L"), page.answer.to_plain_text()
    raise ValueError(f"unknown phase kind {kind!r}; expected glyph, chars, words, lines or pages")


def portuguese_words(seed: int, n_pages: int = 400) -> list[str]:
    """The vocabulary of generated page answers (the generator's own text), for the word and line phases."""
    from faker import Faker

    rng, faker = random.Random(seed), Faker("pt_BR")
    faker.seed_instance(seed)
    words = set()
    for index in range(n_pages):
        answer = make_answer(rng, faker, ("printed", "handwritten", "legal")[index % 3])
        words.update(answer.to_plain_text().split())
    return sorted(words)


# ---------------------------------------------------------------------------------------------------- batches
class Tokenize:
    """Worker side: images stay uint8 arrays (patchified on the device), answers become ids ending in <|im_end|>."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def __call__(self, samples):
        images, answers = zip(*samples)
        pixels = torch.from_numpy(np.stack([np.asarray(image.convert("L")) for image in images]))
        ids = [self.tokenizer(a, add_special_tokens=False)["input_ids"] + [self.end] for a in answers]
        return pixels, ids


class DeviceBatches:
    """Device side: Qwen2.5-VL's patchification and normalization done on the GPU, the same numbers as its image
    processor (checked against it at start-up), so the CPU workers only draw text; labels on the answer only."""

    def __init__(self, processor, device):
        image_processor = processor.image_processor
        self.patch, self.merge = image_processor.patch_size, image_processor.merge_size
        self.temporal = image_processor.temporal_patch_size
        self.mean = torch.tensor(image_processor.image_mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(image_processor.image_std, device=device).view(1, 3, 1, 1)
        self.processor, self.device, self.prompts = processor, device, {}
        self.pad = processor.tokenizer.pad_token_id

    def prompt_ids(self, height: int, width: int) -> torch.Tensor:
        """The prompt for an image of this size (its image-pad count fixed by the size), tokenized once."""
        if (height, width) not in self.prompts:
            prompt = self.processor.apply_chat_template(prompt_messages(TASK), add_generation_prompt=True)
            blank = Image.new("L", (width, height), 255)
            self.prompts[height, width] = self.processor(text=[prompt], images=[blank],
                                                         return_tensors="pt")["input_ids"][0].to(self.device)
        return self.prompts[height, width]

    def pixel_values(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W) uint8 grey pages -> Qwen2.5-VL's flattened patches and each image's (t, h, w) grid."""
        batch, height, width = pixels.shape
        images = pixels.to(self.device, non_blocking=True).float().div_(255).unsqueeze(1).expand(-1, 3, -1, -1)
        images = (images - self.mean) / self.std
        grid_h, grid_w, patch, merge = height // self.patch, width // self.patch, self.patch, self.merge
        frames = images.unsqueeze(1).expand(-1, self.temporal, -1, -1, -1)  # a still image is its two frames
        frames = frames.reshape(batch, 1, self.temporal, 3, grid_h // merge, merge, patch, grid_w // merge, merge,
                                patch)
        frames = frames.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
        flat = frames.reshape(batch * grid_h * grid_w, 3 * self.temporal * patch * patch)
        grid = torch.tensor([[1, grid_h, grid_w]] * batch, device=self.device)
        return flat, grid

    def __call__(self, pixels: torch.Tensor, answer_ids: list[list[int]]) -> dict:
        prompt = self.prompt_ids(*pixels.shape[1:])
        rows, longest, start = len(answer_ids), max(len(ids) for ids in answer_ids), len(prompt)
        input_ids = torch.full((rows, start + longest), self.pad, dtype=torch.long)
        labels = torch.full_like(input_ids, -100)
        for row, ids in enumerate(answer_ids):
            input_ids[row, start:start + len(ids)] = torch.tensor(ids)
            labels[row, start:start + len(ids)] = torch.tensor(ids)
        input_ids, labels = input_ids.to(self.device), labels.to(self.device)
        input_ids[:, :start] = prompt
        attention_mask = (labels != -100).long()
        attention_mask[:, :start] = 1
        pixel_values, grid = self.pixel_values(pixels)
        # Without mm_token_type_ids transformers (5.x) gives the text 1D positions, not Qwen2.5-VL's 3D M-RoPE
        # that generate() uses: a model trained so reads nothing at inference (issue 29's first GPU call).
        mm_token_type_ids = (input_ids == self.processor.image_token_id).int()
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                "pixel_values": pixel_values, "image_grid_thw": grid, "mm_token_type_ids": mm_token_type_ids}


def check_patches(batches: DeviceBatches, processor, image: Image.Image) -> None:
    """Refuse to train on patches that differ from what the image processor gives the model at inference."""
    ours, grid = batches.pixel_values(torch.from_numpy(np.array(image.convert("L")))[None])
    theirs = processor.image_processor(images=[image.convert("L")], return_tensors="pt")
    difference = (ours.cpu() - theirs["pixel_values"]).abs().max().item()
    if difference > 2e-2 or grid.cpu().tolist() != theirs["image_grid_thw"].tolist():
        raise RuntimeError(f"device patches differ from the image processor's (max {difference:.3g})")


# ---------------------------------------------------------------------------------------------------- model
def build(args, device):
    shape = {**TINY_SHAPE, **json.loads(args.shape)}
    processor = build_tiny_processor(shape)
    if args.init:
        from transformers import Qwen2_5_VLForConditionalGeneration

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32)
    else:
        model = build_tiny_model(processor.tokenizer, shape)
    if device.type == "cuda":  # one varlen kernel per vision layer, not one sdpa call per window (the fast path)
        from dharma_train.models.vision_attention import use_varlen_vision_attention

        use_varlen_vision_attention(model)
    return shape, processor, model.to(device)


def optimizer_for(model, args):
    vision = [p for n, p in model.named_parameters() if ".visual." in f".{n}"]
    vision_ids = {id(p) for p in vision}
    rest = [p for p in model.parameters() if id(p) not in vision_ids]
    return torch.optim.AdamW([{"params": rest, "lr": args.lr},
                              {"params": vision, "lr": args.lr * args.vision_lr_scale}],
                             betas=(0.9, 0.98), weight_decay=0.01, fused=torch.cuda.is_available())


def lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@torch.no_grad()
def read(model, processor, samples, device, batch: int = 16) -> list[str]:
    """Greedy transcriptions of (image, answer) samples, batched with left padding as the evaluation hook does."""
    model.eval()
    prompt = processor.apply_chat_template(prompt_messages(TASK), add_generation_prompt=True)
    outputs = []
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        budget = max(len(processor.tokenizer(a)["input_ids"]) for _, a in chunk) + 16
        inputs = processor(text=[prompt] * len(chunk), images=[image for image, _ in chunk], return_tensors="pt",
                           padding=True).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            ids = model.generate(**inputs, max_new_tokens=budget, do_sample=False)
        outputs += processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    model.train()
    return outputs


def cer(model, processor, samples, device) -> float:
    predictions = read(model, processor, samples, device)
    return sum(min(1.0, character_error_rate(p, a)) for p, (_, a) in zip(predictions, samples)) / len(samples)


def held_out_pages(out: Path, n: int, seed: int) -> dict[str, list]:
    """Default-size generated pages of each family, from a seed no training page uses."""
    sets = {}
    for family in ("printed", "handwritten", "legal"):
        pages = generate_pages(out / "eval_pages" / family, n, seed=10_000 + seed, families=[family], task=TASK,
                               progress=False)
        sets[family] = [(Image.open(p.image).convert("L"), p.answer.to_plain_text()) for p in pages.pages]
    return sets


# ---------------------------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    args = parse_arguments(argv)
    torch.manual_seed(args.seed)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out
    shape, processor, model = build(args, device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters on {device}", flush=True)
    phases = [(kind, int(steps)) for kind, steps in (part.split(":") for part in args.phases.split(","))]
    total = sum(steps for _, steps in phases)
    words = portuguese_words(args.seed)
    pool = None
    if any(kind == "pages" for kind, _ in phases):
        pool = generate_pages(work / "train_pages", args.page_pool, seed=args.seed, task=TASK,
                              workers=max(1, args.workers), progress=False).pages
    evaluation_pages = held_out_pages(work, args.eval_pages, args.seed)
    optimizer = optimizer_for(model, args)
    batches = DeviceBatches(processor, device)
    tokenize = Tokenize(processor.tokenizer)
    curve = (args.out / "curve.jsonl").open("a")
    started, step = time.monotonic(), 0
    model.train()
    for kind, steps in phases:
        crops_rng = random.Random(f"eval-{args.seed}-{kind}")
        crops = [draw_sample(kind, crops_rng, words, args.random_fraction, pool) for _ in range(args.eval_crops)]
        loader = DataLoader(PhaseSamples(kind, args.seed + step, words, args.random_fraction, pool),
                            batch_size=args.batch, collate_fn=tokenize, num_workers=args.workers,
                            persistent_workers=False, prefetch_factor=4 if args.workers else None)
        check_patches(batches, processor, crops[0][0])
        losses = []
        for phase_step, (pixels, answer_ids) in enumerate(loader):
            if phase_step >= steps:
                break
            for group, base in zip(optimizer.param_groups, (args.lr, args.lr * args.vision_lr_scale)):
                group["lr"] = base * lr_factor(step, total, args.warmup)
            batch = batches(pixels, answer_ids)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            out_of_time = args.max_minutes and time.monotonic() - started > args.max_minutes * 60
            if step % args.eval_every == 0 or phase_step == steps - 1 or out_of_time:
                point = {"step": step, "phase": kind, "seconds": round(time.monotonic() - started, 1),
                         "loss": round(sum(losses) / len(losses), 4), "cer_phase": round(cer(model, processor, crops,
                                                                                               device), 4)}
                point.update({f"cer_{family}": round(cer(model, processor, pages, device), 4)
                              for family, pages in evaluation_pages.items()})
                losses = []
                print(json.dumps(point), flush=True)
                curve.write(json.dumps(point) + "\n")
                curve.flush()
            if out_of_time:
                break
        if args.max_minutes and time.monotonic() - started > args.max_minutes * 60:
            print(f"stopped after {args.max_minutes} min at step {step}", flush=True)
            break
    model.save_pretrained(args.out / "model")
    processor.save_pretrained(args.out / "model")
    sample = read(model, processor, evaluation_pages["printed"][:2], device)
    (args.out / "run.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                   "shape": shape, "parameters": n_params, "steps": step,
                                                   "seconds": round(time.monotonic() - started, 1),
                                                   "sample_reads": sample}, indent=2, ensure_ascii=False))
    print("sample reads:", json.dumps(sample, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
