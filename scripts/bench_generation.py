"""Greedy generation throughput on one GPU: plain `model.generate` against dharma_train's evaluation path.

Model: a random-init Qwen2.5-VL-3B-shaped model (shapes in ../shared/reference/dharmaocr.md) in bf16 with sdpa.
Its vocabulary is full size (151,936), its special-token ids are the offline tiny tokenizer's, so the real
processor and chat template build the inputs. Pages: synthetic 896 x 1288 px pages (1,472 image tokens each),
256 new tokens per page (a random model rarely emits the end token; new tokens are counted, not assumed).

Baseline: the naive path: stock vision attention, `model.generate` on batches of 8 with the dynamic cache.
dharma_train: `dharma_train.evaluation.generate.generate` (pages ordered by size, static compiled KV cache)
with one varlen attention call per vision layer, at batch 8 and at a large batch.

Run on the device from the repository root:
    run(command="bash scripts/device_bench_generation.sh", carry=[".whl"])
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def model_3b(tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                     "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 128000,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"], "bos_token_id": None,
                     "tie_word_embeddings": True},
        vision_config={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                       "out_hidden_size": 2048, "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16,
                                                                 attn_implementation="sdpa")
    return model.eval()


def plain_generate(model, processor, pages, batch_size, new_tokens):
    """The naive baseline: processor + model.generate per batch, dynamic cache, pages in their given order."""
    from PIL import Image

    from dharma_train.data.prompts import prompt_messages

    tokenizer = processor.tokenizer
    prompt = tokenizer.apply_chat_template(prompt_messages("structured"), add_generation_prompt=True, tokenize=False)
    generated = 0
    torch.cuda.synchronize()
    start = time.perf_counter()
    for offset in range(0, len(pages), batch_size):
        batch = pages[offset:offset + batch_size]
        inputs = processor(images=[Image.open(p.image).convert("RGB") for p in batch], text=[prompt] * len(batch),
                           padding=True, return_tensors="pt").to("cuda")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        generated += int((out[:, inputs["input_ids"].shape[1]:] != tokenizer.pad_token_id).sum())
    torch.cuda.synchronize()
    return generated, time.perf_counter() - start


def ours(model, processor, pages, batch_size, new_tokens):
    from dharma_train.evaluation.generate import generate

    torch.cuda.synchronize()
    results, seconds = generate(model, processor, pages, "structured", new_tokens, batch_size, cache="static",
                                progress=False)
    return sum(r.new_tokens for r in results), seconds


def vision_agreement(model, processor, page):
    """Relative error of the patched (varlen, bf16) vision tower against the stock one run in fp32."""
    from PIL import Image

    inputs = processor.image_processor(images=[Image.open(page.image).convert("RGB")], return_tensors="pt")
    pixels, grid = inputs["pixel_values"].to("cuda"), inputs["image_grid_thw"].to("cuda")
    visual = model.model.visual
    with torch.inference_mode():
        fast = visual(pixels.to(torch.bfloat16), grid_thw=grid)
        fast = getattr(fast, "pooler_output", fast)
        visual.float()
        for module in visual.modules():
            if hasattr(module, "_dharma_stock_forward"):
                module._saved, module.forward = module.forward, module._dharma_stock_forward
        ref = visual(pixels.float(), grid_thw=grid)
        ref = getattr(ref, "pooler_output", ref)
        for module in visual.modules():
            if hasattr(module, "_saved"):
                module.forward = module._saved
        visual.to(torch.bfloat16)
    fast, ref = fast.float(), ref.float()
    return float((fast - ref).norm() / ref.norm()), bool(torch.isfinite(fast).all())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64, 128])
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()

    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.models.loading import load_processor
    from dharma_train.models.tiny import tiny_model_dir
    from dharma_train.models.vision_attention import use_varlen_vision_attention

    work = Path(tempfile.mkdtemp())
    processor = load_processor(str(tiny_model_dir(work / "cache")), max_pixels=1288 * 896)
    pages = generate_pages(work / "pages", args.pages, seed=0, width=896, height=1288).pages
    model = model_3b(processor.tokenizer)
    params = sum(p.numel() for p in model.parameters())
    rows = []

    plain_generate(model, processor, pages[:8], 8, 16)  # warm-up: kernels, allocator
    tokens, seconds = plain_generate(model, processor, pages[:16], 8, args.new_tokens)
    rows.append(("plain model.generate, batch 8 (baseline)", 8, tokens, seconds, 16))
    baseline = tokens / seconds
    print(f"baseline: {baseline:.1f} new tokens/s", flush=True)

    patched = use_varlen_vision_attention(model)
    error, finite = vision_agreement(model, processor, pages[0])
    for batch in args.batches:
        ours(model, processor, pages[:batch], batch, args.new_tokens)  # warm-up: compiles this batch shape
        count = max(2 * batch, 16) if 2 * batch <= len(pages) else len(pages)
        tokens, seconds = ours(model, processor, pages[:count], batch, args.new_tokens)
        rows.append((f"dharma_train, batch {batch}", batch, tokens, seconds, count))
        print(f"batch {batch}: {tokens / seconds:.1f} new tokens/s", flush=True)

    report = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "parameters": params,
        "pages": args.pages, "new_tokens": args.new_tokens, "vision_layers_patched": patched,
        "vision_rel_error_bf16_varlen_vs_fp32_stock": error, "vision_output_finite": finite,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "rows": [{"config": c, "batch": b, "pages": n, "new_tokens": t, "seconds": s, "new_tokens_per_second": t / s,
                  "speedup": t / s / baseline} for c, b, t, s, n in rows],
    }
    Path(args.out, "bench_generation.json").write_text(json.dumps(report, indent=2))
    print(f"\n{report['gpu']}, torch {report['torch']}, transformers {report['transformers']}, "
          f"{params / 1e9:.2f}B parameters, {args.new_tokens} new tokens/page")
    print(f"vision tower, varlen bf16 vs stock fp32: relative error {error:.2e} (finite: {finite})")
    print("| configuration | pages | new tokens/s | x baseline |\n|---|---|---|---|")
    for row in report["rows"]:
        print(f"| {row['config']} | {row['pages']} | {row['new_tokens_per_second']:.0f} | "
              f"{row['speedup']:.1f}x |")
    print(f"peak memory {report['peak_memory_gib']:.1f} GiB")


if __name__ == "__main__":
    main()
