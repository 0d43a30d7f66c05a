"""The embedded default model: a random-init Qwen2.5-VL small enough to train on a laptop CPU in seconds.

Everything is built offline in code (a byte-level BPE trained on generated Portuguese pages, Qwen's special tokens
and chat template, a PIL image processor) and cached, so tests and the default recipe never touch the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import logging
import random
import shutil
from pathlib import Path

import torch
from faker import Faker
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from dharma_train.data.synthetic.text import make_answer
from dharma_train.files import file_hash, read_json_or_none, write_json_atomically
from dharma_train.models.processor import Qwen2_5_VLImageProcessor

log = logging.getLogger(__name__)
BUILT = "built.json"  # each file of a finished build and its hash, written last

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]

# Qwen2.5-VL's chat template, reduced to the image and text parts this library uses.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Part of the cache key: change any of these and the cached tiny model is rebuilt.
TINY_SHAPE = {
    "vocab_size": 1024,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "mrope_section": [4, 6, 6],  # sums to half the head dimension (128 / 4 / 2 = 16)
    "vision_depth": 2,
    "vision_hidden_size": 64,
    "vision_intermediate_size": 128,
    "vision_heads": 4,
    "min_pixels": 28 * 28 * 4,
    "max_pixels": 28 * 28 * 96,
    "seed": 0,
    "version": 1,
}


def default_cache_dir() -> Path:
    """Where built tiny models live: $DHARMA_TRAIN_CACHE, else the user's cache folder."""
    explicit = os.environ.get("DHARMA_TRAIN_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dharma_train"


def tiny_model_dir(cache_dir: str | Path | None = None, shape: dict | None = None) -> Path:
    """Build the tiny model once per shape and return its folder (config, weights, tokenizer and processor)."""
    shape = {**TINY_SHAPE, **(shape or {})}
    key = _cache_key(shape)
    target = Path(cache_dir or default_cache_dir()) / f"tiny-qwen2_5_vl-{key}"
    if _intact(target):
        return target
    if target.exists():
        log.warning("the tiny model's cache %s is damaged, unfinished or from an older dharma_train: building it "
                    "again", target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    processor = build_tiny_processor(shape)
    model = build_tiny_model(processor.tokenizer, shape)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    write_json_atomically(tmp / BUILT, {path.name: file_hash(path) for path in sorted(tmp.iterdir())})
    if _intact(target):  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return target
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _intact(folder: Path) -> bool:
    """A cache folder whose files are those its build recorded (BUILT, written last), byte for byte."""
    built = read_json_or_none(folder / BUILT)
    return isinstance(built, dict) and bool(built) and all(
        (folder / name).is_file() and file_hash(folder / name) == digest for name, digest in built.items())


def _cache_key(shape: dict) -> str:
    """Shape plus what the tokenizer is trained on: the page-text generator's code and Faker's version."""
    import faker

    from dharma_train.data.synthetic import text

    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode())
    digest.update(Path(text.__file__).read_bytes())
    digest.update(faker.VERSION.encode())
    return digest.hexdigest()[:12]


def build_tiny_processor(shape: dict) -> Qwen2_5_VLImageProcessor:
    """A Qwen2.5-VL processor whose tokenizer is a small BPE trained on generated pt-BR page answers."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_bpe(shape["vocab_size"], shape["seed"]),
        eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE, padding_side="left",
    )
    image_processor = Qwen2VLImageProcessorPil(min_pixels=shape["min_pixels"], max_pixels=shape["max_pixels"])
    return Qwen2_5_VLImageProcessor(image_processor, tokenizer, chat_template=CHAT_TEMPLATE)


def build_tiny_model(tokenizer, shape: dict) -> Qwen2_5_VLForConditionalGeneration:
    """A random-init Qwen2.5-VL whose special-token ids are the tiny tokenizer's."""
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": shape["hidden_size"],
            "intermediate_size": shape["intermediate_size"],
            "num_hidden_layers": shape["num_hidden_layers"],
            "num_attention_heads": shape["num_attention_heads"],
            "num_key_value_heads": shape["num_key_value_heads"],
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": shape["mrope_section"]},
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": None,
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": shape["vision_depth"],
            "hidden_size": shape["vision_hidden_size"],
            "intermediate_size": shape["vision_intermediate_size"],
            "num_heads": shape["vision_heads"],
            "out_hidden_size": shape["hidden_size"],
            "fullatt_block_indexes": [shape["vision_depth"] - 1],
            "window_size": 56,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(shape["seed"])
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def _train_bpe(vocab_size: int, seed: int) -> Tokenizer:
    """Byte-level BPE on generated page answers, so Portuguese words and JSON punctuation get short encodings."""
    rng, faker = random.Random(seed), Faker("pt_BR")
    faker.seed_instance(seed)
    families = ("printed", "handwritten", "legal")
    corpus = [make_answer(rng, faker, families[i % 3]).to_json() for i in range(3000)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer
