"""GRPO's sampling through the continuous engine, inside TRL's GRPOTrainer on the tiny model: the answers come back
with their own page's prompt ids, TRL's batched, left-padded log-probabilities of them equal each page's forward
alone, each page's image is encoded once per group, the draws are seeded per step, the image token is never drawn."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration
from trl import GRPOConfig, GRPOTrainer

from dharma_train.data.conversation import grpo_dataset, prompt_page
from dharma_train.data.pages import PageSet
from dharma_train.data.prompts import prompt_messages
from dharma_train.data.synthetic.generate import generate_pages
from dharma_train.models.loading import load_processor
from dharma_train.models.tiny import tiny_model_dir
from dharma_train.stages.grpo_rollout import EngineRollout, cut_at_end, require_left_padding, rollout_seed

GROUP, NEW_TOKENS, TEMPERATURE = 4, 10, 0.7


def _no_reward(completions, **_):
    return [0.0] * len(completions)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Two pages of different sizes, so TRL pads the shorter prompt in a batch with the longer one."""
    root = tmp_path_factory.mktemp("rollout_pages")
    small = generate_pages(root / "small", 1, seed=5, width=168, height=224, id_prefix="small").pages
    large = generate_pages(root / "large", 1, seed=3, id_prefix="large").pages
    return PageSet(root, small + large)


@pytest.fixture(scope="module")
def trainer(pages, tmp_path_factory):
    """TRL's GRPOTrainer sampling through the engine; two passes per generation, so TRL computes the old policy's
    log-probabilities of the sampled answers itself."""
    folder = tiny_model_dir()
    processor = load_processor(str(folder))
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("rollout_trainer")), use_cpu=True, bf16=False,
                      report_to=[], per_device_train_batch_size=2 * GROUP, num_generations=GROUP, num_iterations=2,
                      max_completion_length=NEW_TOKENS, temperature=TEMPERATURE, seed=3)
    trainer = GRPOTrainer(model=model, reward_funcs=[_no_reward], args=args,
                          train_dataset=grpo_dataset(pages, "structured"), processing_class=processor,
                          rollout_func=EngineRollout(pages.pages, processor))
    trainer.model.train()
    return trainer


def _alone(trainer, page, completion: torch.Tensor) -> tuple[list[int], torch.Tensor, int]:
    """A page's prompt ids, the log-probabilities (after TRL's temperature) of each next token of an answer from its
    forward alone (no padding, no other page), and the image tokens its image's grid makes."""
    processor, model = trainer.processing_class, trainer.model
    text = processor.tokenizer.apply_chat_template(prompt_messages("structured"), add_generation_prompt=True,
                                                   tokenize=False)
    inputs = processor(images=[Image.open(page.image).convert("RGB")], text=[text], return_tensors="pt")
    ids = torch.cat([inputs["input_ids"], completion[None]], dim=1)
    types = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(completion)[None]], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=types,
                       pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"]).logits
    steps = (logits[0, inputs["input_ids"].shape[1] - 1:-1] / TEMPERATURE).log_softmax(-1)
    return inputs["input_ids"][0].tolist(), steps, int(inputs["image_grid_thw"].prod()) // 4


def test_engine_answers_carry_their_pages_prompt_ids_and_trl_scores_them_as_each_page_alone(trainer, pages):
    batch = next(iter(trainer.get_train_dataloader()))
    rollout = trainer.rollout_func
    before = rollout.answers, rollout.images_encoded
    out = trainer._generate_and_score_completions(batch)  # TRL's own step: our rollout, then its log-prob pass
    assert (rollout.answers - before[0], rollout.images_encoded - before[1]) == (2 * GROUP, 2)  # 1 image per group
    by_id = {page.id: page for page in pages}
    image_token = trainer.model.config.image_token_id
    lengths, image_tokens = set(), set()
    for row, example in enumerate(batch):
        prompt = out["prompt_ids"][row][out["prompt_mask"][row].bool()].tolist()
        completion = out["completion_ids"][row][out["completion_mask"][row].bool()]
        ids, steps, grid_tokens = _alone(trainer, by_id[example["page_id"]], completion)
        logps = steps.gather(-1, completion[:, None])[:, 0]
        assert prompt_page(example["prompt"]) == example["page_id"]
        assert prompt == ids and prompt.count(image_token) == grid_tokens  # its own page's prompt, whole
        assert image_token not in completion.tolist()
        torch.testing.assert_close(out["old_per_token_logps"][row][:len(completion)], logps, rtol=1e-4, atol=1e-4)
        # TRL's image-token types, from its own padded processor call, sit on the image tokens of the left-padded ids
        types = out["mm_token_type_ids"][row, :out["prompt_ids"].shape[1]]
        assert torch.equal(types == 1, out["prompt_ids"][row] == image_token)
        lengths.add(len(prompt))
        image_tokens.add(grid_tokens)
    assert len(lengths) == 2 and len(image_tokens) == 2  # two sizes: the shorter prompt was padded in TRL's batch


def test_the_engine_draws_from_the_policy_trl_scores(trainer, pages, monkeypatch):
    """With TRL's top_k=1 a draw is the policy's likeliest token: the engine's answers are the argmax of each page's
    forward alone, token after token."""
    batch = next(iter(trainer.get_train_dataloader()))
    monkeypatch.setattr(trainer.args, "top_k", 1)
    completions = trainer.rollout_func([example["prompt"] for example in batch], trainer)["completion_ids"]
    by_id = {page.id: page for page in pages}
    for example, completion in zip(batch, completions):
        _, steps, _ = _alone(trainer, by_id[example["page_id"]], torch.tensor(completion))
        assert steps.argmax(-1).tolist() == completion


def test_a_step_draws_with_its_own_seed(trainer):
    prompts = [example["prompt"] for example in next(iter(trainer.get_train_dataloader()))]
    step = trainer.state.global_step

    def sampled(at_step):
        trainer.state.global_step = at_step
        try:
            return trainer.rollout_func(prompts, trainer)["completion_ids"]
        finally:
            trainer.state.global_step = step

    first = sampled(step)
    assert sampled(step) == first and sampled(step + 1) != first
    assert len({tuple(ids) for ids in first}) > 1  # a group's answers differ: each slot draws its own tokens


def test_the_image_token_is_never_drawn_even_when_the_model_prefers_it(trainer):
    prompts = [example["prompt"] for example in next(iter(trainer.get_train_dataloader()))]
    image_token = trainer.model.config.image_token_id
    favour = trainer.model.lm_head.register_forward_hook(lambda _, __, logits: logits.index_add(
        -1, torch.tensor([image_token]), torch.full((*logits.shape[:-1], 1), 100.0)))
    try:
        completions = trainer.rollout_func(prompts, trainer)["completion_ids"]
    finally:
        favour.remove()
    assert all(image_token not in ids for ids in completions)
    assert trainer.model.training  # the rollout samples in eval mode and hands the model back as it was


def test_an_answer_ends_at_its_first_end_token_and_seeds_differ_by_step_and_process():
    assert cut_at_end([5, 7, 2, 9, 3], {2, 3}) == [5, 7, 2] and cut_at_end([5, 7], {2}) == [5, 7]
    assert len({rollout_seed(1, step, rank) for step in range(3) for rank in range(2)}) == 6


def test_a_processor_that_pads_right_is_refused_since_trl_would_misplace_the_image_token_types(pages):
    processor = load_processor(str(tiny_model_dir()))
    text = processor.tokenizer.apply_chat_template(prompt_messages("structured"), add_generation_prompt=True,
                                                   tokenize=False)
    images = [Image.open(page.image).convert("RGB") for page in pages]
    alone = [processor(images=[image], text=[text])["input_ids"][0] for image in images]
    image_token = processor.image_token_id
    longest = max(len(ids) for ids in alone)
    left_padded = torch.tensor([[0] * (longest - len(ids)) + list(ids) for ids in alone])  # as TRL pads them
    for side, lined_up in (("left", True), ("right", False)):
        processor.tokenizer.padding_side = side
        types = processor(images=images, text=[text] * 2, padding=True, return_tensors="pt")["mm_token_type_ids"]
        assert torch.equal(types == 1, left_padded == image_token) is lined_up
    with pytest.raises(ValueError, match="pads left"):
        require_left_padding(processor)
