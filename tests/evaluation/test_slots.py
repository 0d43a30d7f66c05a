"""The slot decoder's steps on the tiny model, on the CPU: a prompt written in chunks over several mixed steps, while
another slot decodes, gives the stock model's logits; the compiled decode step gives the eager one's."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from dharma_train.data.prompts import prompt_messages
from dharma_train.data.synthetic.generate import generate_pages
from dharma_train.evaluation.slot_attention import SLOT_ATTENTION
from dharma_train.evaluation.slots import Chunk, SlotDecoder, text_attention
from dharma_train.evaluation.vision_stage import VisionFeatures, embed_with_images, encode_pages
from dharma_train.models.loading import load_processor
from dharma_train.models.tiny import tiny_model_dir
from tests.tiny_models import perturbed_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model (weights perturbed, as in test_continuous.py) and two pages' inputs, prompts 113 and 153."""
    folder = tiny_model_dir()
    processor = load_processor(str(folder))
    model = perturbed_tiny_model()
    root = tmp_path_factory.mktemp("slot_pages")
    pages = generate_pages(root / "small", 1, seed=5, width=168, height=224, id_prefix="small").pages
    pages += generate_pages(root / "large", 1, seed=3).pages
    prompt = processor.tokenizer.apply_chat_template(prompt_messages("structured"), add_generation_prompt=True,
                                                     tokenize=False)
    inputs = [dict(processor(images=[Image.open(page.image).convert("RGB")], text=[prompt], return_tensors="pt"))
              for page in pages]
    return model, inputs


def _prompt(model, inputs):
    """A page's prompt embeddings (images in place), rope positions [3, length] and rope delta."""
    features = encode_pages(model, [inputs], [("page",)], VisionFeatures())
    embeds = embed_with_images(model, inputs["input_ids"], features)[0]
    positions, deltas = model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                                   image_grid_thw=inputs["image_grid_thw"],
                                                   attention_mask=inputs["attention_mask"])
    return embeds, positions[:, 0], deltas.view(-1)


def _stock_logits(model, inputs, new_tokens: list[int]) -> torch.Tensor:
    """The stock model's logits for the token after the prompt and `new_tokens`."""
    added = torch.tensor([new_tokens], dtype=torch.long)
    ids = torch.cat([inputs["input_ids"], added], dim=1)
    types = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(added, dtype=inputs["mm_token_type_ids"].dtype)],
                      dim=1)
    output = model(**{**inputs, "input_ids": ids, "attention_mask": torch.ones_like(ids), "mm_token_type_ids": types})
    return output.logits[0, -1]


def test_a_prompt_written_in_chunks_beside_a_decoding_slot_gives_the_stock_logits(tiny):
    model, (decoding, chunked) = tiny
    decoder = SlotDecoder(model, slots=3, max_len=256, use_graph=False)
    with text_attention(model, SLOT_ATTENTION), torch.inference_mode():
        embeds, positions, delta = _prompt(model, decoding)  # slot 2 takes its whole prompt in one step
        _, last = decoder.mixed_step([Chunk(slot=2, start=0, embeds=embeds, positions=positions)])
        first = last.argmax(dim=-1)
        decoder.activate(torch.tensor([2]), torch.tensor([embeds.shape[0]]), delta, first)
        tokens = [int(first)]
        embeds, positions, _ = _prompt(model, chunked)  # slot 0's prompt in chunks of 40 while slot 2 decodes
        for start in range(0, embeds.shape[0], 40):
            piece = slice(start, start + 40)
            decode_logits, last = decoder.mixed_step([Chunk(slot=0, start=start, embeds=embeds[piece],
                                                            positions=positions[:, piece])])
            assert torch.allclose(decode_logits[2], _stock_logits(model, decoding, tokens), atol=1e-4)
            tokens.append(int(decode_logits[2].argmax()))
            decoder.tokens[2] = tokens[-1]
        assert start > 80  # four chunks
        assert torch.allclose(last[0], _stock_logits(model, chunked, []), atol=1e-4)


@pytest.mark.slow  # torch.compile's first build of the step: about a minute on 2 cores, 9 s from its cache
def test_the_compiled_decode_step_gives_the_eager_logits(tiny):
    model, (inputs, _) = tiny
    eager = SlotDecoder(model, slots=2, max_len=256, use_graph=False)
    compiled = SlotDecoder(model, slots=2, max_len=256, use_graph=False, compile_step=True)
    with text_attention(model, SLOT_ATTENTION), torch.inference_mode():
        embeds, positions, delta = _prompt(model, inputs)
        for decoder in (eager, compiled):
            _, last = decoder.mixed_step([Chunk(slot=1, start=0, embeds=embeds, positions=positions)])
            decoder.activate(torch.tensor([1]), torch.tensor([embeds.shape[0]]), delta, last.argmax(dim=-1))
        for _ in range(3):
            expected, got = eager.step(), compiled.step()
            assert torch.allclose(got[1], expected[1], atol=1e-4)
            eager.tokens.copy_(expected.argmax(dim=-1))
            compiled.tokens.copy_(expected.argmax(dim=-1))


def test_a_step_that_fails_to_compile_runs_uncompiled(tiny):
    model, (inputs, _) = tiny
    broken, eager = (SlotDecoder(model, slots=1, max_len=256, use_graph=False) for _ in range(2))

    def failing_compile():
        raise RuntimeError("backend compiler failed")

    broken.decode = failing_compile
    assert broken.compiled
    with text_attention(model, SLOT_ATTENTION), torch.inference_mode():
        embeds, positions, delta = _prompt(model, inputs)
        for decoder in (broken, eager):
            _, last = decoder.mixed_step([Chunk(slot=0, start=0, embeds=embeds, positions=positions)])
            decoder.activate(torch.tensor([0]), torch.tensor([embeds.shape[0]]), delta, last.argmax(dim=-1))
        assert torch.equal(broken.step(), eager.step())
    assert not broken.compiled
