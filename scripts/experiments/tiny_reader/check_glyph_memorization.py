"""Can a random-init tiny Qwen2.5-VL memorize 8 fixed images of one large glyph each (A-H)? The cheapest check
that an image reaches the answer at a given learning rate (docs/experiments/tiny-reader.md: at 2e-3 it cannot).

Example: python -m scripts.experiments.tiny_reader.check_glyph_memorization --lr 3e-4 --steps 300
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from dharma_train.models.tiny import TINY_SHAPE, build_tiny_model, build_tiny_processor
from scripts.experiments.tiny_reader import pretrain_reader as reader


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    processor = build_tiny_processor(TINY_SHAPE)
    model = build_tiny_model(processor.tokenizer, TINY_SHAPE)
    fixed = [(reader.draw_text([char], (56, 56), (38, 38), random.Random(args.seed)), char) for char in "ABCDEFGH"]
    batch = reader.DeviceBatches(processor, torch.device("cpu"))(*reader.Tokenize(processor.tokenizer)(fixed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    started = time.monotonic()
    for step in range(1, args.steps + 1):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == args.steps:
            reads = reader.read(model, processor, fixed, torch.device("cpu"), batch=8)
            print(json.dumps({"lr": args.lr, "step": step, "loss": round(loss.item(), 3),
                              "correct_of_8": sum(r.strip() == a for r, (_, a) in zip(reads, fixed)),
                              "reads": reads, "seconds": round(time.monotonic() - started)}), flush=True)


if __name__ == "__main__":
    main()
