"""The CTC reader's samples: lines of random strings and shuffled pt-BR words, stacks of lines, readable pages.

Each sample is (image, answer text, CTC targets per 28 px band or None). Lines are drawn one per band of a
448 px wide strip in the generator's fonts (every role, handwriting included) with its mild scan degradations,
so the CTC loss sees each line where it pools it. Pages are `readable_page`s: no CTC targets.
"""

from __future__ import annotations

import random
import string
from dataclasses import replace

from PIL import Image, ImageDraw
from torch.utils.data import IterableDataset, get_worker_info

from dharma_train.data.prompts import target_text
from dharma_train.data.synthetic import fonts
from dharma_train.data.synthetic.degrade import degrade, sample_degradation
from dharma_train.data.synthetic.readable import readable_page
from scripts.experiments.tiny_reader.reader_ctc import covered, encode

WIDTH, BAND = 448, 28
RANDOM_CHARS = string.ascii_letters + string.digits + "áàâãéêíóôõúçÁÉÍÓÚÇ.,;:-/()$%"
FAMILIES = ("printed", "handwritten", "legal")
KINDS = ("line", "lines", "page", "json")  # "ctc" draws "line" samples


def random_string(rng: random.Random, low: int = 2, high: int = 10) -> str:
    return "".join(rng.choice(RANDOM_CHARS) for _ in range(rng.randint(low, high)))


def line_text(rng: random.Random, words: list[str], max_chars: int = 40) -> str:
    """Half the lines random strings (no language prior), half shuffled pt-BR words with their accents."""
    budget, picks = rng.randint(4, max_chars), []
    use_random = rng.random() < 0.5
    while True:
        word = random_string(rng) if use_random else rng.choice(words)
        if picks and len(" ".join(picks + [word])) > budget:
            break
        picks.append(word)
        if len(" ".join(picks)) >= budget:
            break
    return " ".join(picks)[:max_chars].strip() or "a"


def draw_lines(lines: list[str], bands: int, rng: random.Random) -> Image.Image:
    """Each line in its own 28 px band of a 448 px strip, one face and size for all, shifted right at random."""
    image = Image.new("L", (WIDTH, BAND * bands), rng.randint(200, 255))
    draw = ImageDraw.Draw(image)
    role = rng.choice(fonts.ROLES)
    face = fonts.pick_face(rng, role, " ".join(lines))
    px = rng.randint(17, 24) if role == "hand" else rng.randint(14, 20)
    font = face.font(px)
    while px > 8 and max(draw.textlength(line, font=font) for line in lines) > WIDTH - 6:
        px -= 1
        font = face.font(px)
    ink = rng.randint(0, 90)
    for band, line in enumerate(lines):
        ascent, descent = font.getmetrics()
        top = band * BAND + (BAND - ascent - descent) / 2 + rng.uniform(-1.5, 1.5)
        free = WIDTH - 4 - draw.textlength(line, font=font)
        draw.text((2 + rng.uniform(0, max(0.0, free)), top), line, fill=ink, font=font)
    spec = replace(sample_degradation(rng), skew_degrees=0.0, photo=False)
    return degrade(image, rng, spec)


def draw_sample(kind: str, rng: random.Random, words: list[str]):
    """One (image, answer, CTC targets per band or None) of a phase kind."""
    if kind in ("ctc", "line"):
        text = line_text(rng, words)
        return draw_lines([text], 1, rng), text, [encode(text)]
    if kind == "lines":
        lines = [line_text(rng, words) for _ in range(rng.randint(2, 4))]
        return draw_lines(lines, 4, rng), "\n".join(lines), [encode(line) for line in lines]
    if kind in ("page", "json"):
        family = rng.choice(FAMILIES)
        image, answer = readable_page(f"train/{rng.getrandbits(64)}", family)
        return image.convert("L"), target_text(answer, "structured" if kind == "json" else "plain"), None
    raise ValueError(f"unknown phase kind {kind!r}; expected ctc, line, lines, page or json")


def held_out_pages(n: int, family: str, task: str = "plain") -> list[tuple]:
    """Readable pages from seeds no training page draws (training seeds start with 'train/')."""
    samples = []
    for index in range(n):
        image, answer = readable_page(f"heldout/{family}/{index}", family)
        samples.append((image.convert("L"), target_text(answer, task), answer))
    return samples


def pt_words(seed: int = 0, n_pages: int = 600) -> list[str]:
    """Words of the generator's own page text (accents and all), those the CTC alphabet covers."""
    from dharma_train.data.synthetic.generate import make_page_answer

    found = set()
    for index in range(n_pages):
        page_seed = f"words/{seed}/{index}"
        answer = make_page_answer(random.Random(page_seed), FAMILIES[index % 3], 60, page_seed)
        found.update(word for word in answer.to_plain_text().split() if covered(word))
    return sorted(found)


class Samples(IterableDataset):
    """Endless samples of one kind; each worker its own stream, seeded by (seed, kind, worker)."""

    def __init__(self, kind: str, seed: str, words: list[str]):
        self.kind, self.seed, self.words = kind, seed, words

    def __iter__(self):
        worker = get_worker_info()
        rng = random.Random(f"{self.seed}-{self.kind}-{worker.id if worker else 0}")
        while True:
            yield draw_sample(self.kind, rng, self.words)
