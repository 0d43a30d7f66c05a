"""The benchmarks' Qwen2.5-VL-3B shape is written once (dharma_train/models/hub_layout.py) and every builder uses it."""

from dharma_train.models import hub_layout as hub
from dharma_train.models.loading import load_processor
from scripts.benchmarks import bench_generation, bench_training

# Qwen2.5-VL-3B-Instruct's config.json
QWEN_3B_TEXT = {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
                "num_key_value_heads": 2}
QWEN_3B_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                  "out_hidden_size": 2048, "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112}


def test_every_benchmark_builds_qwens_3b_shape_from_the_one_table(tiny_artifact):
    tokenizer = load_processor(tiny_artifact.processor_location).tokenizer
    text, vision = hub.shape_configs("3b")
    assert QWEN_3B_TEXT.items() <= text.items() and QWEN_3B_VISION.items() <= vision.items()
    configs = {"bench_generation": bench_generation.config_3b(tokenizer),
               "bench_training": bench_training.model_config(tokenizer, "3b")}
    for name, config in configs.items():
        for key, value in QWEN_3B_TEXT.items():
            assert getattr(config.text_config, key) == value, (name, key)
        for key, value in QWEN_3B_VISION.items():
            assert getattr(config.vision_config, key) == value, (name, key)
        assert config.text_config.rope_parameters["mrope_section"] == [16, 24, 24], name
        assert config.text_config.vocab_size == 151936 and config.tie_word_embeddings, name
    short = bench_training.model_config(tokenizer, "3b-8")
    assert (short.text_config.num_hidden_layers, short.vision_config.depth) == (8, 8)
    assert short.text_config.hidden_size == 2048 and short.vision_config.hidden_size == 1280
