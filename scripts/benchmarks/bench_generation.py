"""Generation on one GPU, side by side in one process: plain `model.generate` against dharma_train's engines.

Model: a random-init Qwen2.5-VL-3B-shaped model (shapes in ../shared/reference/dharmaocr.md) in bf16 with sdpa.
Its vocabulary is full size (151,936), its special-token ids are the offline tiny tokenizer's, so the real
processor and chat template build the inputs. Pages: synthetic 896 x 1288 px pages (1,472 image tokens each).
A random model never emits the end token, so every page runs to its bound: 256 new tokens, or 2,048 for the pages
made to loop in the looping set. Every row's time covers image preprocessing, prefill and decoding.

Rows (each printed with its ratio to the baseline of this run):
- baseline: stock vision attention, `processor(...)` + `model.generate` on batches of 8, dynamic cache;
- continuous engine (`dharma_train/evaluation/continuous.py`) at 8 and 64 slots, varlen vision attention;
- a looping set: the same pages, 10 % of them bound at 2,048 tokens, with and without the loop stop; the
  detector's verdicts replayed on those full-length generations;
- greedy agreement with plain `generate` on the same pages (same patched model);
- int4 (AWQ W4A16's layout: symmetric int4, groups of 128, language linears) against the bf16 rows: on torch's
  int4 kernel alone (tinygemm, prefill included: the path before issue 32), and with the kernels the chooser
  (`dharma_train/models/int4_chooser.py`) picks per layer shape at each slot count (tinygemm, gemlite where
  installed, or the dequantized bf16 matmul) with prefill on the dequantized bf16 weights; each chosen row keeps
  the chooser's timings and `decode_backend`; plus exact-unpack checks of the stored layouts against the real
  CUDA packers;
- a torch.profiler summary of the 64-slot run.

--sections picks parts (default: all), e.g. the int4 comparison alone with its bf16 rows:
    --sections continuous_1,continuous_8,continuous_32,continuous_64,int4

Run on the device from the repository root (extra arguments go to the benchmark, e.g. --pages 64):
    run(command="bash scripts/gpu.sh timeout 330 python3 -m scripts.benchmarks.bench_generation", carry=[".whl"])
gemlite rows need gemlite's wheel in .whl (docs/quantization.md, "int4 that pays").
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPORT: dict = {"rows": [], "notes": {}}


def config_3b(tokenizer):
    """Qwen2.5-VL-3B's shape (dharma_train/models/hub_layout.py) with `tokenizer`'s special-token ids."""
    from dharma_train.models.hub_layout import shape_configs
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    text, vision = shape_configs("3b")
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": 151936, **text, "max_position_embeddings": 128000,
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"], "bos_token_id": None,
                     "tie_word_embeddings": True},
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True)
    config._attn_implementation = "sdpa"
    return config


def model_3b(tokenizer):
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = config_3b(tokenizer)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16,
                                                                 attn_implementation="sdpa")
    return model.eval()


def prompt_for(processor):
    from dharma_train.data.prompts import prompt_messages

    return processor.tokenizer.apply_chat_template(prompt_messages("structured"), add_generation_prompt=True,
                                                   tokenize=False)


def plain_generate(model, processor, pages, batch_size, new_tokens):
    """The naive baseline: processor + model.generate per batch, dynamic cache; new token ids per page."""
    from PIL import Image

    tokenizer = processor.tokenizer
    prompt = prompt_for(processor)
    outputs = []
    torch.cuda.synchronize()
    start = time.perf_counter()
    for offset in range(0, len(pages), batch_size):
        batch = pages[offset:offset + batch_size]
        inputs = processor(images=[Image.open(p.image).convert("RGB") for p in batch], text=[prompt] * len(batch),
                           padding=True, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        outputs += [row[row != tokenizer.pad_token_id].tolist() for row in out[:, inputs["input_ids"].shape[1]:]]
    torch.cuda.synchronize()
    return outputs, time.perf_counter() - start


def engine(model, processor, pages, slots, new_tokens, bounds=None, loop_stop=None):
    """The continuous engine as `generate(engine="continuous")` runs it: results, seconds, counters."""
    from dharma_train.evaluation.continuous import ContinuousGenerator

    generator = ContinuousGenerator(model, processor, prompt_for(processor), new_tokens, slots,
                                    processor.tokenizer.eos_token_id, None, loop_stop, use_graph=True, seed=None,
                                    grouped_attention=True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    results = generator.run([p.image for p in pages], progress=False, bounds=bounds)
    torch.cuda.synchronize()
    return results, time.perf_counter() - start, generator.stats


def add_row(name, batch, pages, tokens, seconds, stats=None, **extra):
    row = {"config": name, "batch": batch, "pages": pages, "new_tokens": tokens, "seconds": seconds,
           "new_tokens_per_second": tokens / seconds, **extra}
    if stats:
        decode_seconds = max(seconds - stats["prefill_seconds"], 1e-9)
        row.update(stats, decode_tokens_per_second=tokens / decode_seconds)
    baseline = REPORT.get("baseline_tokens_per_second")
    row["x_baseline"] = row["new_tokens_per_second"] / baseline if baseline else 1.0
    REPORT["rows"].append(row)
    print(f"ROW {name}: {row['new_tokens_per_second']:.0f} new tok/s ({row['x_baseline']:.1f}x), "
          f"{seconds:.2f} s, {pages} pages" + (f", decode-only {row['decode_tokens_per_second']:.0f} tok/s, "
                                               f"prefill {stats['prefill_seconds']:.2f} s" if stats else ""),
          flush=True)


def x_bf16(slots: int) -> dict:
    """The last row's speed against the bf16 continuous row at the same slot count, when this run has one."""
    bf16 = [row for row in REPORT["rows"] if row["config"] == f"continuous engine, {slots} slots"]
    if not bf16:
        return {}
    row = REPORT["rows"][-1]
    row["x_bf16_same_slots"] = row["new_tokens_per_second"] / bf16[-1]["new_tokens_per_second"]
    print(f"  {row['x_bf16_same_slots']:.2f}x bf16 at {slots} slots", flush=True)
    return row


def first_difference(a: list[int], b: list[int]) -> int:
    """Index of the first differing token (the shorter length when one is a prefix of the other)."""
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return min(len(a), len(b)) if len(a) != len(b) else -1


def weight_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def to_int4(model, group_size=128) -> int:
    """The language model's linears as Int4Linear on RTN int4 codes: AWQ W4A16's storage and kernel path."""
    from dharma_train.models.quantized import int4_linear_from_codes, quantize_groups, set_module

    names = [name for name, module in model.model.language_model.named_modules()
             if isinstance(module, torch.nn.Linear)]
    for name in names:
        module = model.model.language_model.get_submodule(name)
        codes, scale = quantize_groups(module.weight.data, group_size)
        layer = int4_linear_from_codes(codes, scale.float(), None, module.bias, module.weight.device)
        set_module(model.model.language_model, name, layer)
        del module
    torch.cuda.empty_cache()
    return len(names)


def int4_kernel_error(group_size=128):
    """Relative error of the int4 layer against the same codes dequantized into a bf16 matmul, M = 8 and 1024."""
    from dharma_train.models.quantized import int4_linear_from_codes, quantize_groups

    weight = torch.randn(11008, 2048, device="cuda", dtype=torch.bfloat16) * 0.02
    codes, scale = quantize_groups(weight, group_size)
    layer = int4_linear_from_codes(codes, scale.float(), None, None, "cuda")
    layer.dense_above = None  # the kernel at every row count, as before issue 32
    dense = (codes.float().view(11008, -1, group_size) * scale.float()[..., None]).view(11008, 2048)
    errors = {}
    for rows in (8, 1024):
        x = torch.randn(rows, 2048, device="cuda", dtype=torch.bfloat16)
        ref = x.double() @ dense.double().t()
        errors[rows] = float((layer(x).double() - ref).norm() / ref.norm())
    return errors


def int4_unpack_checks(group_size=128):
    """Whether each stored int4 layout unpacks, on this GPU, to exactly the codes it was packed from (torch's real
    CUDA packer; gemlite's, where installed), and the dense path's error against the kernel at 8 and 1,024 rows."""
    from dharma_train.models.int4_chooser import gemlite_unavailable
    from dharma_train.models.int4_layouts import dequantize
    from dharma_train.models.int4_storage import STORAGES

    torch.manual_seed(0)
    codes = torch.randint(0, 16, (11008, 2048), dtype=torch.uint8, device="cuda")
    scale = (torch.rand(11008, 2048 // group_size, device="cuda") * 0.02).to(torch.bfloat16)
    zero = torch.full(scale.shape, 8, dtype=torch.int8, device="cuda")
    weight = dequantize(codes, scale, zero, torch.bfloat16)
    checks = {"gemlite": gemlite_unavailable(torch.device("cuda"))}
    for name in ["tinygemm"] + ([] if checks["gemlite"] else ["gemlite"]):
        storage = STORAGES[name](codes, scale, zero, group_size)
        errors = {}
        for rows in (8, 1024):
            x = torch.randn(rows, 2048, device="cuda", dtype=torch.bfloat16)
            reference = storage.matmul(x).double()
            errors[rows] = float(((x @ weight.t()).double() - reference).norm() / reference.norm())
        checks[name] = {"unpacks_exactly": bool(torch.equal(storage.codes(), codes)), "dense_vs_kernel": errors}
    return checks


def section(name, function, chosen=None):
    """Run one part (unless `chosen` leaves it out); a failure is recorded and printed, and the rest still runs."""
    if chosen is not None and name not in chosen:
        return
    start = time.perf_counter()
    try:
        function()
    except Exception as error:  # noqa: BLE001 - the benchmark reports every part it could measure
        REPORT["notes"][f"{name}_error"] = repr(error)
        traceback.print_exc()
    print(f"[{name}: {time.perf_counter() - start:.1f} s]", flush=True)
    Path(REPORT["out"], "bench_generation.json").write_text(json.dumps(REPORT, indent=2, default=str))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--loop-tokens", type=int, default=2048)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--sections", default="all", help="comma-separated parts to run (default: all)")
    args = parser.parse_args()
    chosen = None if args.sections == "all" else set(args.sections.split(","))
    REPORT["out"] = args.out

    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.evaluation.loop_stop import LoopStop, replay_early_stop
    from dharma_train.models.loading import load_processor
    from dharma_train.models.tiny import tiny_model_dir
    from dharma_train.models.vision_attention import use_varlen_vision_attention

    work = Path(tempfile.mkdtemp())
    processor = load_processor(str(tiny_model_dir(work / "cache")), max_pixels=1288 * 896)
    pages = generate_pages(work / "pages", args.pages, seed=0, width=896, height=1288, workers=8).pages
    model = model_3b(processor.tokenizer)
    REPORT.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__,
                  transformers=__import__("transformers").__version__,
                  parameters=sum(p.numel() for p in model.parameters()), new_tokens=args.new_tokens)
    n = args.new_tokens
    state: dict = {}

    def baseline():
        plain_generate(model, processor, pages[:8], 8, 8)  # warm-up: kernels, allocator
        outputs, seconds = plain_generate(model, processor, pages[:8], 8, n)
        REPORT["baseline_tokens_per_second"] = sum(map(len, outputs)) / seconds
        add_row("plain model.generate, batch 8 (baseline)", 8, 8, sum(map(len, outputs)), seconds)

    section("baseline", baseline, chosen)
    REPORT["vision_layers_patched"] = use_varlen_vision_attention(model)

    def agreement():
        reference, _ = plain_generate(model, processor, pages[:8], 8, 64)
        ours, _, _ = engine(model, processor, pages[:8], 8, 64)
        differences = [first_difference(r, o.tokens) for r, o in zip(reference, ours)]
        REPORT["greedy_agreement_3b"] = {"pages": 8, "new_tokens": 64, "identical": differences.count(-1),
                                         "first_difference": differences}
        print("greedy agreement with plain generate (8 pages x 64 tokens):", REPORT["greedy_agreement_3b"],
              flush=True)

    section("agreement", agreement, chosen)

    def continuous(slots, count):
        def run():
            engine(model, processor, pages[:slots], slots, 8)  # warm-up: captures this slot count's graph
            results, seconds, stats = engine(model, processor, pages[:count], slots, n)
            add_row(f"continuous engine, {slots} slots", slots, count, sum(r.decoded for r in results), seconds,
                    stats)
            state[slots] = seconds
        return run

    section("continuous_1", continuous(1, 4), chosen)
    section("continuous_8", continuous(8, 16), chosen)
    section("continuous_32", continuous(32, 64), chosen)
    section("continuous_64", continuous(64, args.pages), chosen)

    def looping():
        bounds = [args.loop_tokens if i % 10 == 0 else n for i in range(args.pages)]
        looping_pages = [i for i, b in enumerate(bounds) if b > n]
        full, seconds, stats = engine(model, processor, pages, 64, args.loop_tokens, bounds=bounds)
        add_row(f"continuous, 64 slots, {len(looping_pages)} pages looping to {args.loop_tokens}, no loop stop",
                64, args.pages, sum(r.decoded for r in full), seconds, stats,
                x_no_loop_set=seconds / state[64] if 64 in state else None)
        early, seconds, stats = engine(model, processor, pages, 64, args.loop_tokens, bounds=bounds,
                                       loop_stop=LoopStop())
        add_row(f"continuous, 64 slots, {len(looping_pages)} pages looping to {args.loop_tokens}, loop stop",
                64, args.pages, sum(r.decoded for r in early), seconds, stats,
                x_no_loop_set=seconds / state[64] if 64 in state else None,
                stopped_early=sum(r.stopped_early for r in early))
        replay = []
        for i in looping_pages:
            at, scored = replay_early_stop(full[i].tokens, args.loop_tokens, LoopStop(), processor.tokenizer.decode)
            replay.append({"page": i, "stops_at": at, "projection_equals_full": scored == full[i].tokens,
                           "engine_equals_full": early[i].tokens == full[i].tokens})
        REPORT["loop_stop_replay_3b"] = replay
        print("loop-stop replay on full-length 3B generations:", replay, flush=True)

    section("looping", looping, chosen)

    def profile():
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            engine(model, processor, pages[:64], 64, 32)
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
        Path(args.out, "profile.txt").write_text(table)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12), flush=True)

    section("profile", profile, chosen)

    def int4():
        from dharma_train.models.int4_chooser import choose_int4_backends
        from dharma_train.models.quantized import Int4Linear, decode_backend

        REPORT["int4_kernel_rel_error"] = int4_kernel_error()
        print("int4 kernel relative error vs dequantized fp64:", REPORT["int4_kernel_rel_error"], flush=True)
        REPORT["int4_unpack_checks"] = int4_unpack_checks()
        print("int4 layouts:", REPORT["int4_unpack_checks"], flush=True)
        bf16_bytes = weight_bytes(model)
        REPORT["int4_layers"] = to_int4(model)
        REPORT["weight_bytes"] = {"bf16": bf16_bytes, "int4": weight_bytes(model),
                                  "ratio": weight_bytes(model) / bf16_bytes}
        print("weights:", REPORT["weight_bytes"], flush=True)
        layers = [m for m in model.modules() if isinstance(m, Int4Linear)]
        for slots, count in ((1, 4), (8, 16), (32, 64), (64, args.pages)):
            if slots < 64:  # the path before issue 32: tinygemm for every forward, prefill included
                for layer in layers:
                    layer.use_storage("tinygemm")
                    layer.dense_above, layer.dense_rows = None, frozenset()
                engine(model, processor, pages[:slots], slots, 8)
                results, seconds, stats = engine(model, processor, pages[:count], slots, n)
                add_row(f"int4 (W4A16 layout), tinygemm alone, continuous, {slots} slots", slots, count,
                        sum(r.decoded for r in results), seconds, stats, backend=decode_backend(model))
                x_bf16(slots)
            start = time.perf_counter()
            reasons = choose_int4_backends(model, slots)
            choose_seconds = time.perf_counter() - start
            engine(model, processor, pages[:slots], slots, 8)
            results, seconds, stats = engine(model, processor, pages[:count], slots, n)
            add_row(f"int4 (W4A16 layout), chosen kernels + bf16 prefill, continuous, {slots} slots", slots, count,
                    sum(r.decoded for r in results), seconds, stats, backend=decode_backend(model),
                    choice=reasons, choose_seconds=choose_seconds)
            x_bf16(slots)
            print("  ran on:", decode_backend(model), f"(chosen in {choose_seconds:.1f} s)", *reasons, sep="\n  ",
                  flush=True)
        REPORT["weight_bytes"]["int4_after_choice"] = weight_bytes(model)

    section("int4", int4, chosen)
    REPORT["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    Path(args.out, "bench_generation.json").write_text(json.dumps(REPORT, indent=2, default=str))
    print(f"\n{REPORT['gpu']}, torch {REPORT['torch']}, transformers {REPORT['transformers']}, "
          f"{REPORT['parameters'] / 1e9:.2f}B parameters, {n} new tokens/page")
    print("| configuration | pages | new tokens/s | x baseline | decode-only tok/s | seconds |")
    print("|---|---|---|---|---|---|")
    for row in REPORT["rows"]:
        decode = f"{row['decode_tokens_per_second']:.0f}" if "decode_tokens_per_second" in row else ""
        print(f"| {row['config']} | {row['pages']} | {row['new_tokens_per_second']:.0f} | {row['x_baseline']:.1f}x | "
              f"{decode} | {row['seconds']:.2f} |")
    print(f"peak memory {REPORT['peak_memory_gib']:.1f} GiB; notes: {REPORT['notes']}")


if __name__ == "__main__":
    main()
