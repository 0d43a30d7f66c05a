"""GRPO's sampling through the project's continuous engine (TRL's `rollout_func`): the G answers of a page share one
encoding of its image, and pages of different lengths share the slots, instead of one padded `model.generate`.

TRL hands the rollout the step's prompts, one per answer (its sampler repeats each page `num_generations` times),
already deep-copied, so a PIL image no longer says which file it came from: the page travels in the prompt itself
(`page_prompt`: its id on the image block, which chat templates ignore). The rollout returns, per answer, the
prompt ids the engine prefilled and the sampled ids; TRL decodes them, scores them and computes every
log-probability and the loss from the dataset's images, as it does for its own sampling.

Sampling is the policy TRL would sample: TRL's temperature, top-p, top-k and repetition penalty, the model in eval
mode (no dropout), and the image token never drawn (TRL suppresses it too: a sampled image token has no features).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from dharma_train.data.conversation import prompt_page
from dharma_train.data.pages import Page
from dharma_train.evaluation.continuous import ContinuousGenerator
from dharma_train.evaluation.vision_stage import VisionFeatures


def rollout_seed(seed: int, step: int, rank: int) -> int:
    """A sampling seed per run seed, optimizer step and process: a resumed step draws with the seed it had."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def cut_at_end(tokens: list[int], end_tokens: set[int]) -> list[int]:
    """The answer up to and including its first end token (TRL stops on every end token; the engine on one)."""
    for position, token in enumerate(tokens):
        if token in end_tokens:
            return tokens[:position + 1]
    return tokens


@contextmanager
def as_trl_samples(model, generation_config, suppressed: list[int]):
    """The model in eval mode, with TRL's generation settings (the engine reads its repetition penalty there) and
    the suppressed tokens' logits at -inf, as TRL's `generate` sees it; restored afterwards."""
    was_training, saved_config = model.training, model.generation_config
    banned = torch.tensor(suppressed, dtype=torch.long, device=model.lm_head.weight.device)
    hook = model.lm_head.register_forward_hook(lambda _, __, logits: logits.index_fill(-1, banned, float("-inf")))
    model.eval()
    model.generation_config = generation_config
    try:
        yield model
    finally:
        hook.remove()
        model.generation_config = saved_config
        model.train(was_training)


def require_left_padding(processor) -> None:
    """TRL pads the prompt ids left but takes Qwen2.5-VL's image-token types (the M-RoPE positions) from the
    processor's own padded batch: padded right, they would sit beside the wrong tokens of every shorter prompt."""
    if processor.tokenizer.padding_side != "left":
        raise ValueError(f"GRPO needs a processor that pads left (TRL pads the prompt ids left and the image-token "
                         f"types as the processor does), got padding_side={processor.tokenizer.padding_side!r}")


class EngineRollout:
    """TRL's `rollout_func`: every answer of the step sampled through one continuous-engine pass, one slot each."""

    def __init__(self, pages: list[Page], processor):
        require_left_padding(processor)
        self.pages = {page.id: page for page in pages}
        self.processor = processor
        self.answers = 0  # answers sampled over the rollout's life
        self.images_encoded = 0  # page images through the vision tower: one per page and step, not one per answer

    def __call__(self, prompts: list, trainer) -> dict:
        """Prompt ids, sampled ids and (none: TRL computes them) log-probabilities, one per prompt, in order."""
        pages = [self.pages[prompt_page(prompt)] for prompt in prompts]
        engine, results = self._sample(_instruction(prompts, self.processor), pages, trainer)
        distinct = {page.id: page for page in pages}
        prompt_ids = {key: engine.prepare(page.image)[1]["input_ids"][0].tolist() for key, page in distinct.items()}
        return {"prompt_ids": [prompt_ids[page.id] for page in pages],
                "completion_ids": [cut_at_end(result.tokens, set(trainer.eos_token_ids)) for result in results],
                "logprobs": None}

    def _sample(self, instruction: str, pages: list[Page], trainer) -> tuple[ContinuousGenerator, list]:
        """One engine pass over every answer of the step, with the policy as TRL samples it."""
        from trl.models.utils import unwrap_model_for_generation

        args = trainer.args
        vision = VisionFeatures()  # the policy's weights change every step: its image features too
        seed = rollout_seed(args.seed, trainer.state.global_step, trainer.accelerator.process_index)
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         gather_deepspeed3_params=args.ds3_gather_for_generation,
                                         gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs) as model:
            network = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers in place
            suppressed = trainer.generation_config.suppress_tokens or []
            with as_trl_samples(network, trainer.generation_config, suppressed):
                on_cuda = next(network.parameters()).device.type == "cuda"
                engine = ContinuousGenerator(
                    network, self.processor, instruction, args.max_completion_length, len(pages),
                    self.processor.tokenizer.eos_token_id,
                    {"temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k}, loop_stop=None,
                    use_graph=on_cuda, seed=seed, vision=vision)
                results = engine.run([page.image for page in pages], progress=False)
        self.answers += len(results)
        self.images_encoded += vision.encoded
        return engine, results


def _instruction(prompts: list, processor) -> str:
    """The prompts' text as TRL's log-probability pass renders it (the same for every page of a run)."""
    from trl.data_utils import apply_chat_template

    texts = {apply_chat_template({"prompt": prompt}, processor)["prompt"] for prompt in prompts}
    if len(texts) != 1:
        raise ValueError(f"GRPO's engine sampling takes one instruction per run, got {len(texts)} different ones")
    return texts.pop()
