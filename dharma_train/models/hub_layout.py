"""A random-init Qwen2.5-VL checkpoint folder laid out the way the Hub's Qwen2.5-VL-3B-Instruct is, built offline.

What matches the Hub folder: Qwen's tokenizer class with the 151,643-entry BPE table size, the 22 special tokens at
Qwen's ids (<|endoftext|> 151643, <|im_end|> 151645, <|image_pad|> 151655, ...), the 151,936-row embedding, the
stock chat template with its default system prompt, preprocessor_config.json naming Qwen2_5_VLProcessor (so
`AutoProcessor` builds the stock processor where torchvision is installed), generation_config.json, and sharded
safetensors with an index. What does not: the BPE merges are trained here on generated pt-BR page answers and the
rest of the table is filler entries no merge produces (the real vocabulary cannot be downloaded here), and the
weights are random.

`--looping` builds a model that loops by construction: every language layer's output projections are zero, so the
residual stream at a position is its token's embedding, and the untied LM head is the embedding table with a few
rows permuted so that greedy and sampled decoding both walk a fixed cycle of tokens (a street address line) forever.
Its compute per token is the dense model's; it is what DPO mining and the loop stop are measured on.

    python -m dharma_train.models.hub_layout OUT_DIR [--shape 3b|tiny] [--looping] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

QWEN_SPECIAL_TOKENS = [  # in id order from 151643, as in Qwen2.5-VL's tokenizer_config.json
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]
FIRST_SPECIAL_ID = 151643
VOCAB_ROWS = 151936  # the embedding's rows: the tokenizer's 151,665 ids padded to a multiple of 128

# Qwen2.5-VL-3B-Instruct's chat_template.json, verbatim.
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5-VL-3B-Instruct's preprocessor_config.json.
PREPROCESSOR_CONFIG = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
}

SHAPES = {
    "3b": {"text": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                    "num_attention_heads": 16, "num_key_value_heads": 2, "mrope_section": [16, 24, 24],
                    "rope_theta": 1e6},
           "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                      "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112}},
    "tiny": {"text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "num_key_value_heads": 2, "mrope_section": [2, 3, 3],
                      "rope_theta": 1e6},
             "vision": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                        "fullatt_block_indexes": [1], "window_size": 112}},
}

LOOP_TEXT = "Rua das Flores, 12 - Centro\n"  # the line the looping model repeats


def hub_tokenizer(merge_vocab: int = 4000, seed: int = 0):
    """Qwen2Tokenizer with a BPE trained on generated page answers, padded to Qwen's table size, Qwen's specials."""
    from faker import Faker
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    from dharma_train.data.synthetic.text import make_answer

    rng, faker = random.Random(seed), Faker("pt_BR")
    faker.seed_instance(seed)
    corpus = [make_answer(rng, faker, ("printed", "handwritten", "legal")[i % 3]).to_json() for i in range(2000)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=merge_vocab, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    for index in range(len(vocab), FIRST_SPECIAL_ID):  # entries no merge can produce: the table's size only
        vocab[f"<|unused_{index}|>"] = index
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    # <|endoftext|> (the constructor's default special) takes the first id after the table, the rest follow in order
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, clean_up_tokenization_spaces=False,
                               model_max_length=131072)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS[1:]],
                         special_tokens=True)
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    tokenizer.padding_side = "right"  # the Hub's default; dharma_train's loader sets left for generation
    wrong = {t: tokenizer.convert_tokens_to_ids(t) for i, t in enumerate(QWEN_SPECIAL_TOKENS)
             if tokenizer.convert_tokens_to_ids(t) != FIRST_SPECIAL_ID + i}
    if wrong:
        raise RuntimeError(f"special tokens not at Qwen's ids: {wrong}")
    return tokenizer


def shape_configs(shape: str) -> tuple[dict, dict]:
    """(text_config, vision_config) keywords of a shape: sizes and rotary settings, without token ids or vocabulary;
    the one place the benchmarks' 3B shape is written (bench_generation, bench_training build it from here)."""
    text, vision = SHAPES[shape]["text"], SHAPES[shape]["vision"]
    text_config = {**{k: v for k, v in text.items() if k not in ("mrope_section", "rope_theta")},
                   "rope_parameters": {"rope_type": "default", "rope_theta": text["rope_theta"],
                                       "mrope_section": text["mrope_section"]}}
    vision_config = {**vision, "out_hidden_size": text["hidden_size"], "patch_size": 14, "spatial_merge_size": 2,
                     "temporal_patch_size": 2}
    return text_config, vision_config


def hub_model(tokenizer, shape: str, device: str, dtype=None):
    """Random-init Qwen2.5-VL of the shape (bfloat16 unless `dtype`), with the tokenizer's special-token ids and Qwen's
    vocabulary rows."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text, vision = shape_configs(shape)
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": VOCAB_ROWS, "max_position_embeddings": 128000, "bos_token_id": 151643,
                     "eos_token_id": 151645, "pad_token_id": None, "tie_word_embeddings": True, **text},
        vision_config={**vision, "in_chans": 3},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"], tie_word_embeddings=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype or torch.bfloat16)
    # Qwen2.5-VL-3B-Instruct's generation_config.json
    model.generation_config.update(bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643,
                                   do_sample=True, temperature=1e-6, repetition_penalty=1.05)
    return model.eval()


def make_looping(model, tokenizer, text: str = LOOP_TEXT) -> list[int]:
    """Zero every language layer's output projections and point the LM head along a cycle of `text`'s tokens that
    the assistant header's last token enters; returns the cycle (see the module docstring)."""
    header_end = tokenizer.encode("<|im_start|>assistant\n")[-1]
    cycle = tokenizer.encode(text)
    if cycle[-1] != header_end:
        raise ValueError(f"the loop text must end with the assistant header's last token {header_end!r}")
    if len(set(cycle)) != len(cycle):
        raise ValueError(f"the loop text's tokens must be distinct: {cycle}")
    import torch

    language = model.model.language_model
    with torch.no_grad():
        for layer in language.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embeddings = language.embed_tokens.weight
        head = torch.nn.Linear(embeddings.shape[1], embeddings.shape[0], bias=False,
                               device=embeddings.device, dtype=embeddings.dtype)
        head.weight.copy_(embeddings)  # argmax of E @ norm(E_t) is t itself: every other token repeats
        for here, following in zip(cycle, cycle[1:] + cycle[:1]):
            head.weight[following] = embeddings[here]  # so the token after `here` is `following`
        # The chosen token's logit leads the largest of the others by ~ std * (d - 4.5 sqrt(d)): scale that lead to
        # about 40 so that sampling at any usual temperature walks the cycle too.
        width, std = embeddings.shape[1], embeddings.float().std().item()
        head.weight.mul_(max(1.0, 40.0 / (std * (width - 4.5 * width ** 0.5))))
    model.lm_head = head
    model.config.tie_word_embeddings = False
    model.config.text_config.tie_word_embeddings = False
    return cycle


def write_checkpoint(folder: str | Path, shape: str = "3b", looping: bool = False, device: str = "cpu") -> Path:
    """The whole folder: weights (sharded), config, generation config, tokenizer files, preprocessor and chat
    template files; returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = hub_tokenizer()
    model = hub_model(tokenizer, shape, device)
    if looping:
        make_looping(model, tokenizer)
    model.save_pretrained(folder, max_shard_size="4GB")
    tokenizer.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2) + "\n")
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_CHAT_TEMPLATE}, indent=2) + "\n")
    return folder


def main():
    """`python -m dharma_train.models.hub_layout OUT_DIR`: build a folder for a benchmark or an end-to-end recipe run."""
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="3b")
    parser.add_argument("--looping", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(write_checkpoint(args.out, args.shape, args.looping, args.device))


if __name__ == "__main__":
    main()
