"""Held-out reading scores of the CTC reader: CTC and language-model CER on lines, model CER on readable pages.

CER is the library's normalized character error rate (`dharma_train.evaluation.metrics`), capped at 1 per sample
and averaged. Lines and pages are drawn once from seeds no training sample uses.
"""

from __future__ import annotations

import random

import torch

from dharma_train.data.prompts import prompt_messages
from dharma_train.evaluation.metrics import character_error_rate, read_answer, schema_compliant

FAMILIES = ("printed", "handwritten", "legal")


def mean_cer(predictions: list[str], references: list[str]) -> float:
    return round(sum(min(1.0, character_error_rate(p, r)) for p, r in zip(predictions, references))
                 / max(1, len(references)), 4)


@torch.no_grad()
def generate(model, processor, images, task: str, budget: int, device, batch: int = 64) -> list[str]:
    """Greedy reads of `images` under `task`'s prompt, batched with left padding."""
    model.eval()
    prompt = processor.apply_chat_template(prompt_messages(task), add_generation_prompt=True)
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        inputs = processor(text=[prompt] * len(chunk), images=chunk, return_tensors="pt", padding=True).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            ids = model.generate(**inputs, max_new_tokens=budget, do_sample=False)
        outputs += processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    model.train()
    return outputs


@torch.no_grad()
def ctc_read(model, head, features, batches, images) -> list[str]:
    """Greedy CTC transcriptions of single-line strips (one band each)."""
    import numpy as np
    from scripts.experiments.tiny_reader.reader_ctc import greedy_decode

    model.eval()
    pixels = torch.from_numpy(np.stack([np.asarray(image) for image in images]))
    flat, grid = batches.pixel_values(pixels)
    with torch.autocast(batches.device.type, dtype=torch.bfloat16, enabled=batches.device.type == "cuda"):
        model.model.visual(flat, grid_thw=grid)
    bands = features.bands()
    model.train()
    return greedy_decode(head(bands.reshape(-1, *bands.shape[2:])))


class Evaluator:
    """Holds the held-out sets; called with the current phase kind, returns the curve point's scores."""

    def __init__(self, model, processor, head, features, batches, device, n_lines: int, n_pages: int, words,
                 seed: int):
        from scripts.experiments.tiny_reader.reader_data import draw_sample, held_out_pages

        rng = random.Random(f"heldout-lines/{seed}")
        self.lines = [draw_sample("line", rng, words)[:2] for _ in range(n_lines)]
        self.pages = {family: held_out_pages(n_pages, family) for family in FAMILIES}
        self.model, self.processor, self.head, self.features = model, processor, head, features
        self.batches, self.device, self.last = batches, device, {}

    def __call__(self, kind: str) -> dict:
        images, texts = [image for image, _ in self.lines], [text for _, text in self.lines]
        ctc = ctc_read(self.model, self.head, self.features, self.batches, images)
        scores = {"cer_lines_ctc": mean_cer(ctc, texts)}
        self.last = {"lines": list(zip(texts[:3], ctc[:3]))}
        if kind == "ctc":  # the language model has not been trained yet
            return scores
        reads = self._read(images, texts, "plain")
        scores["cer_lines"] = mean_cer(reads, texts)
        self.last["lines_lm"] = list(zip(texts[:3], reads[:3]))
        for family, pages in self.pages.items():
            plain = [answer.to_plain_text() for _, _, answer in pages]
            reads = self._read([image for image, _, _ in pages], plain, "plain")
            scores[f"cer_{family}"] = mean_cer(reads, plain)
            self.last[family] = [plain[0], reads[0]]
            if kind == "json":
                outputs = self._read([image for image, _, _ in pages], [a.to_json() for _, _, a in pages],
                                     "structured")
                parsed = [read_answer(output) for output in outputs]
                scores[f"json_valid_{family}"] = round(sum(map(schema_compliant, outputs)) / len(outputs), 4)
                scores[f"cer_json_{family}"] = mean_cer([a.to_plain_text() if a else o for a, o in
                                                         zip(parsed, outputs)], plain)
        return scores

    def _read(self, images, references, task: str) -> list[str]:
        budget = max(len(self.processor.tokenizer(r)["input_ids"]) for r in references) + 16
        return generate(self.model, self.processor, images, task, budget, self.device)

    def samples(self) -> dict:
        """A few (reference, read) pairs of the last evaluation, for run.json."""
        return self.last
