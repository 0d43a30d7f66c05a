"""The continuous-batching engine against plain `model.generate` on the tiny model, on the CPU."""

from __future__ import annotations

import pytest

from dharma_train.data.prompts import prompt_messages
from dharma_train.data.synthetic.generate import generate_pages
from dharma_train.evaluation import continuous
from dharma_train.evaluation.generate import generate
from dharma_train.evaluation.loop_stop import LoopStop
from dharma_train.models.loading import load_processor
from dharma_train.models.tiny import tiny_model_dir
from tests.tiny_models import perturbed_tiny_model

NEW_TOKENS = 24


@pytest.fixture(scope="module")
def engine_setup(tmp_path_factory):
    """The tiny model with its weights perturbed (a plain random init repeats one token), and pages of two sizes."""
    folder = tiny_model_dir()
    processor = load_processor(str(folder))
    model = perturbed_tiny_model()
    root = tmp_path_factory.mktemp("engine_pages")
    small = generate_pages(root / "small", 3, seed=5, width=168, height=224, id_prefix="small").pages
    large = generate_pages(root / "large", 4, seed=3).pages
    pages = [large[0], small[0], large[1], small[1], large[2], small[2], large[3]]  # mixed, not in size order
    # an end token the model really emits mid-answer, so pages end at different lengths and slots are refilled
    answers, _ = generate(model, processor, pages[:4], "structured", NEW_TOKENS, 4, engine="generate",
                          progress=False)
    streams = [processor.tokenizer(a.text, add_special_tokens=False)["input_ids"] for a in answers]

    def spread(token):  # how many different places the token first comes at, over the pages
        return len({stream.index(token) if token in stream else -1 for stream in streams})

    return model, processor, pages, max(sorted(set(streams[0][1:])), key=spread)


def _answers(generations):
    return [(g.text, g.new_tokens, g.hit_token_limit) for g in generations]


@pytest.fixture(scope="module")
def stopped_plain(engine_setup):
    """Plain `generate`'s greedy answers with the chosen token as the end token: pages end at different lengths."""
    model, processor, pages, stop_token = engine_setup
    tokenizer = processor.tokenizer
    saved, tokenizer.eos_token = tokenizer.eos_token, tokenizer.convert_ids_to_tokens(stop_token)
    try:
        plain, _ = generate(model, processor, pages, "structured", NEW_TOKENS, 1, engine="generate", progress=False)
    finally:
        tokenizer.eos_token = saved
    assert len({g.new_tokens for g in plain}) > 1 and any(not g.hit_token_limit for g in plain)
    assert len({g.text for g in plain}) >= 4  # different answers: a page lost or swapped between slots would show
    return plain


def test_greedy_tokens_equal_plain_generate_with_fewer_slots_than_pages(engine_setup, stopped_plain, monkeypatch):
    model, processor, pages, stop_token = engine_setup
    tokenizer = processor.tokenizer
    monkeypatch.setattr(continuous, "_CAPACITY_STEP", 8)  # the caches grow (and slots move) as longer pages come
    saved, tokenizer.eos_token = tokenizer.eos_token, tokenizer.convert_ids_to_tokens(stop_token)
    try:
        ours, _ = generate(model, processor, pages, "structured", NEW_TOKENS, 3, engine="continuous",
                           progress=False)
    finally:
        tokenizer.eos_token = saved
    assert _answers(ours) == _answers(stopped_plain)


@pytest.mark.parametrize("chunk_tokens", [40, 150])
def test_prompts_written_in_chunks_while_other_slots_decode_give_plain_generates_tokens(
        engine_setup, stopped_plain, monkeypatch, chunk_tokens):
    """Prompts of 113 and 153 tokens: 40 splits each over several steps; 150 also ends one and starts the next."""
    model, processor, pages, stop_token = engine_setup
    monkeypatch.setattr(continuous, "_CAPACITY_STEP", 8)
    prompt = processor.tokenizer.apply_chat_template(prompt_messages("structured"), add_generation_prompt=True,
                                                     tokenize=False)
    engine = continuous.ContinuousGenerator(model, processor, prompt, NEW_TOKENS, 3, stop_token, None, None,
                                            use_graph=False, seed=None, prefill_chunk_tokens=chunk_tokens)
    results = engine.run([page.image for page in pages], progress=False)
    decode = processor.tokenizer.decode
    assert [(decode(r.tokens, skip_special_tokens=True), len(r.tokens)) for r in results] == \
        [(g.text, g.new_tokens) for g in stopped_plain]
    stats = engine.stats
    assert stats["prefill_chunks"] > len(pages)  # prompts split over several steps
    assert stats["mixed_decode_tokens"] > 0  # while slots holding earlier pages decoded
    assert stats["decode_tokens"] > 0  # and steps without prompt tokens ran the plain decode step
    lengths = [engine.prepare(page.image)[1]["input_ids"].shape[1] for page in pages]
    assert stats["prefill_tokens"] == sum(lengths)


@pytest.mark.parametrize("chunk_tokens", [40, 8192])
def test_repetition_penalty_of_the_generation_config_is_applied_as_generate_does(engine_setup, monkeypatch,
                                                                                  chunk_tokens):
    model, processor, pages, _ = engine_setup
    monkeypatch.setattr(model.generation_config, "repetition_penalty", 1.3)
    plain, _ = generate(model, processor, pages[:3], "structured", NEW_TOKENS, 1, engine="generate", progress=False)
    ours, _ = generate(model, processor, pages[:3], "structured", NEW_TOKENS, 2, engine="continuous",
                       progress=False, prefill_chunk_tokens=chunk_tokens)
    assert _answers(ours) == _answers(plain)


def test_seeded_sampling_is_reproducible(engine_setup):
    model, processor, pages, _ = engine_setup
    sampling = {"temperature": 1.0, "top_p": 0.95}

    def run(seed, slots):
        result, _ = generate(model, processor, pages[:3], "structured", NEW_TOKENS, slots, engine="continuous",
                             sampling=sampling, seed=seed, progress=False)
        return [g.text for g in result]

    first = run(7, 2)
    assert run(7, 2) == first
    assert run(8, 2) != first


def test_an_empty_page_list_gives_no_answers(engine_setup):
    model, processor, _, _ = engine_setup
    assert generate(model, processor, [], "structured", 8, 4, engine="continuous",
                    progress=False)[0] == []


@pytest.fixture(scope="module")
def full_length(engine_setup):
    """Four pages decoded to a bound of 48 with no loop stop."""
    model, processor, pages, _ = engine_setup
    return generate(model, processor, pages[:4], "structured", 48, 2, engine="continuous", progress=False)[0]


@pytest.mark.parametrize("chunk_tokens", [40, 8192])
def test_a_confirmed_loop_frees_its_slot_and_is_scored_on_its_projection_to_the_bound(engine_setup, full_length,
                                                                                       chunk_tokens):
    model, processor, pages, _ = engine_setup
    lax = LoopStop(max_period=8, min_tokens=12, min_repeats=4, check_every=4)  # the tiny model's loops are short
    full = full_length
    early, _ = generate(model, processor, pages[:4], "structured", 48, 2, engine="continuous", progress=False,
                        loop_stop=lax, prefill_chunk_tokens=chunk_tokens)
    stopped = [g for g in early if g.stopped_early]
    assert stopped and all(g.new_tokens == 48 and g.hit_token_limit and g.tokens_decoded < 48 for g in stopped)
    assert all(a.text == b.text for a, b in zip(full, early) if not b.stopped_early)


def test_a_second_pass_reuses_the_encoded_images_and_gives_the_same_answers(engine_setup):
    from dharma_train.evaluation.vision_stage import VisionFeatures

    model, processor, pages, _ = engine_setup
    plain, _ = generate(model, processor, pages, "structured", NEW_TOKENS, 2, engine="generate", progress=False)
    store = VisionFeatures(budget_bytes=2**30)
    first, _ = generate(model, processor, pages, "structured", NEW_TOKENS, 3, engine="continuous", progress=False,
                        vision=store)
    assert (store.encoded, store.hits) == (len(pages), 0)
    second, _ = generate(model, processor, pages, "structured", NEW_TOKENS, 3, engine="continuous", progress=False,
                         vision=store)
    assert (store.encoded, store.hits) == (len(pages), len(pages))  # every page's image from the store
    assert _answers(first) == _answers(second) == _answers(plain)


def test_features_past_the_budget_are_encoded_again(engine_setup):
    from dharma_train.evaluation.vision_stage import VisionFeatures

    model, processor, pages, _ = engine_setup
    store = VisionFeatures(budget_bytes=1)  # room for nothing
    for _ in range(2):
        generate(model, processor, pages[:3], "structured", 4, 3, engine="continuous", progress=False, vision=store)
    assert (store.encoded, store.hits, store.kept_bytes) == (6, 0, 0)
