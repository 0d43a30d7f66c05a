"""DPO pair mining: the model's own bad answers become the rejected side, the ground truth the chosen side.

DharmaOCR's anti-degeneration DPO: generate with the SFT model on training pages (greedy and sampled), keep the
outputs the evaluation module flags (loops, invalid JSON, schema violations, page furniture repeated in the
body), and pair each with the page's true answer. Usable alone (`mine_pairs`) and inside the `dpo` stage
(`pairs: mined`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import torch

from dharma_train.data.pages import PageSet
from dharma_train.data.pairs import PreferencePair
from dharma_train.data.prompts import target_text
from dharma_train.evaluation.generate import generate_across_ranks
from dharma_train.evaluation.loop_stop import LoopStop, stop_rule
from dharma_train.evaluation.vision_stage import VisionFeatures
from dharma_train.evaluation.metrics import PageScore, score_page

log = logging.getLogger(__name__)

REASONS = ("degenerate", "furniture_repeat", "invalid_json", "schema")
# The paper's rejected answers: loops and repeated page furniture. Mining invalid-JSON and schema failures too broke
# the JSON on 1 of 3 seeds with every optimizer setting swept (docs/dpo.md): opt in with `mining.reasons`.
DEFAULT_REASONS = ("degenerate", "furniture_repeat")


@dataclass
class MiningConfig:
    """How candidates are generated and which failures become rejected answers (`stages.NAME.mining`)."""

    greedy: bool = True  # include the greedy answer: the one evaluation sees
    samples_per_page: int = 2  # sampled answers per page, on top of greedy
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 512  # the bound a looping answer runs into
    batch_size: int = 8  # pages at a time (engine generate) or slots (engine continuous)
    engine: str = "auto"  # auto: continuous batching on CUDA, model.generate elsewhere | continuous | generate
    loop_stop: bool = True  # continuous engine: a confirmed loop stops early; its projection is the rejected text
    loop_stop_repeats: int = 8  # a unit that reads as text is a loop once repeated this many times
    loop_stop_max_pattern_tokens: int = 128  # longest unit looked for, in tokens
    vision_cache_gib: float = 8.0  # host memory for the pages' image features, encoded once for every pass
    prefill_chunk_tokens: int = 8192  # continuous engine: prompt tokens a step writes beside the decode tokens; 0: all
    compile_decode: bool = False  # continuous engine: fuse the decode step with torch.compile before its CUDA graph
    reasons: list[str] = field(default_factory=lambda: list(DEFAULT_REASONS))
    max_pairs_per_page: int = 2
    min_pairs: int = 8  # fewer than this: act per `on_too_few`
    on_too_few: str = "skip"  # skip: the stage passes its input model on, with the reason in the report | fail

    def __post_init__(self):
        unknown = sorted(set(self.reasons) - set(REASONS))
        if unknown or not self.reasons:
            raise ValueError(f"mining.reasons must be a non-empty subset of {list(REASONS)}, got {self.reasons}")
        if self.engine not in ("auto", "continuous", "generate"):
            raise ValueError(f"mining.engine must be 'auto', 'continuous' or 'generate', got {self.engine!r}")
        if self.on_too_few not in ("skip", "fail"):
            raise ValueError(f"mining.on_too_few must be 'skip' or 'fail', got {self.on_too_few!r}")
        if not self.greedy and self.samples_per_page < 1:
            raise ValueError("mining needs greedy=true or samples_per_page >= 1")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.max_pairs_per_page < 1 or self.min_pairs < 1:
            raise ValueError("mining: temperature > 0, 0 < top_p <= 1, max_pairs_per_page and min_pairs >= 1")
        self.loop_stop_rule()  # refuses bad loop_stop_* values at start
        if self.vision_cache_gib < 0:
            raise ValueError(f"mining.vision_cache_gib must be >= 0, got {self.vision_cache_gib}")
        if self.prefill_chunk_tokens < 0:
            raise ValueError(f"mining.prefill_chunk_tokens must be >= 0 (0: whole prompts), got "
                             f"{self.prefill_chunk_tokens}")

    def loop_stop_rule(self) -> LoopStop | None:
        """The loop stop these settings ask for, or None."""
        return stop_rule(self.loop_stop, self.loop_stop_repeats, self.loop_stop_max_pattern_tokens)


def rejection_reason(score: PageScore) -> str:
    """The mining reason for a scored answer, or "" when the answer is acceptable."""
    if score.degeneration_reason == "furniture_repeat":
        return "furniture_repeat"
    if score.degenerate:
        return "degenerate"
    if not score.json_valid:
        return "invalid_json"
    if not score.schema_valid:
        return "schema"
    return ""


def mine_pairs(model, processor, pages: PageSet, task: str, config: MiningConfig, seed: int = 0,
               progress: bool = True) -> tuple[list[PreferencePair], dict]:
    """Preference pairs from the model's own failures on the pages, and counts of what was generated and kept.

    Under several processes each generates on its share of the pages; every process gets the same pairs.
    """
    passes = ([("greedy", None)] if config.greedy else []) + [
        (f"sample-{n}", {"temperature": config.temperature, "top_p": config.top_p})
        for n in range(config.samples_per_page)]
    pairs: list[PreferencePair] = []
    per_page: Counter = Counter()
    seen: set[tuple[str, str]] = set()
    counts = Counter()
    seconds = 0.0
    vision = VisionFeatures(budget_bytes=int(config.vision_cache_gib * 2**30))  # one model: every pass shares it
    for number, (source, sampling) in enumerate(passes):
        torch.manual_seed(seed + number)
        generations, elapsed = generate_across_ranks(model, processor, pages.pages, task, config.max_new_tokens,
                                                     config.batch_size, cache="auto", progress=progress,
                                                     sampling=sampling, engine=config.engine,
                                                     loop_stop=config.loop_stop_rule(),
                                                     seed=seed + number, vision=vision,
                                                     prefill_chunk_tokens=config.prefill_chunk_tokens,
                                                     compile_step=config.compile_decode)
        seconds += elapsed
        for page, generation in zip(pages, generations):
            counts["generated"] += 1
            if not generation.text.strip():  # nothing but special tokens: no text to prefer against
                counts["found_empty"] += 1
                continue
            score = score_page(page.id, page.family, generation.text, page.answer, generation.hit_token_limit,
                               generation.new_tokens)
            reason = rejection_reason(score)
            counts[f"found_{reason or 'clean'}"] += 1
            chosen = target_text(page.answer, task)
            if (reason not in config.reasons or per_page[page.id] >= config.max_pairs_per_page
                    or (page.id, generation.text) in seen or generation.text == chosen):
                continue
            seen.add((page.id, generation.text))
            per_page[page.id] += 1
            pairs.append(PreferencePair(id=page.id, image=page.image, chosen=chosen, rejected=generation.text,
                                        reason=reason, source=source))
    stats = {"pages": len(pages), "pairs": len(pairs), "seconds": seconds, **dict(sorted(counts.items())),
             "images_encoded": vision.encoded, "images_reused": vision.hits,
             "pairs_by_reason": dict(sorted(Counter(p.reason for p in pairs).items()))}
    log.info("mined %d pairs from %d answers on %d pages: %s", len(pairs), counts["generated"], len(pages),
             stats["pairs_by_reason"])
    return pairs, stats
