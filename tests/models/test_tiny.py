"""The embedded model builds offline, is cached, and is an ordinary Qwen2.5-VL checkpoint."""

import json

from transformers import AutoModelForImageTextToText, AutoTokenizer

from dharma_train.models.loading import load_processor
from dharma_train.models.tiny import SPECIAL_TOKENS, tiny_model_dir


def test_built_once_then_cached(tiny_artifact):
    folder = tiny_model_dir()
    assert str(folder) == tiny_artifact.path
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_dir() == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_loads_with_plain_transformers_and_special_ids_match(tiny_artifact):
    model = AutoModelForImageTextToText.from_pretrained(tiny_artifact.path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_artifact.path)
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert all(tokenizer.convert_tokens_to_ids(t) < len(tokenizer) for t in SPECIAL_TOKENS)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_tokenizer_round_trips_portuguese_and_chat_template(tiny_artifact):
    processor = load_processor(tiny_artifact.path)
    text = '{"header": "CERTIDÃO", "text": "Ação judicial nº 12, São João"}'
    ids = processor.tokenizer(text)["input_ids"]
    assert processor.tokenizer.decode(ids) == text
    assert len(ids) < 0.6 * len(text), "the BPE should compress Portuguese page text"
    prompt = processor.tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "oi"}]}],
        add_generation_prompt=True, tokenize=False)
    assert prompt == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>oi<|im_end|>\n<|im_start|>assistant\n"
    config = json.loads((tiny_model_dir() / "processor_config.json").read_text())
    assert config["processor_class"] == "Qwen2_5_VLImageProcessor"


def test_cache_key_follows_the_tokenizer_corpus(monkeypatch, tmp_path):
    """Editing the page-text generator changes the BPE corpus, so it must give a new cached model."""
    from dharma_train.data.synthetic import text
    from dharma_train.models import tiny

    before = tiny._cache_key(tiny.TINY_SHAPE)
    edited = tmp_path / "text.py"
    edited.write_bytes(open(text.__file__, "rb").read() + b"\n# edited\n")
    monkeypatch.setattr(text, "__file__", str(edited))
    assert tiny._cache_key(tiny.TINY_SHAPE) != before
    assert tiny._cache_key({**tiny.TINY_SHAPE, "hidden_size": 64}) != before


def test_a_damaged_cache_is_built_again_and_no_temporary_folder_is_left(tmp_path, caplog):
    """Issue 34: a truncated cached model gave a SafetensorError on every run and was never rebuilt."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from dharma_train.models.tiny import tiny_model_dir

    folder = tiny_model_dir(tmp_path)
    weights = folder / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[: len(intact) // 2])
    assert tiny_model_dir(tmp_path) == folder
    assert "is damaged, unfinished or from an older dharma_train: building it again" in caplog.text
    assert weights.read_bytes() == intact, "the build is deterministic: the same bytes again"
    Qwen2_5_VLForConditionalGeneration.from_pretrained(folder)
    assert [path.name for path in tmp_path.iterdir()] == [folder.name], "no .tmpPID folder left behind"
