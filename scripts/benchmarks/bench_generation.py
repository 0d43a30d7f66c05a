"""Generation on one GPU, side by side in one process: plain `model.generate` against dharma_train's engines.

Model: a random-init Qwen2.5-VL-3B-shaped model (shapes in ../shared/reference/dharmaocr.md) in bf16 with sdpa.
Its vocabulary is full size (151,936), its special-token ids are the offline tiny tokenizer's, so the real
processor and chat template build the inputs. Pages: synthetic 896 x 1288 px pages (1,472 image tokens each).
A random model never emits the end token, so every page runs to its bound: 256 new tokens, or 2,048 for the pages
made to loop in the looping set. Every row's time covers image preprocessing, prefill and decoding.

Sections (`--sections a,b,...`, default all; each a row or a check, printed with its ratio to the baseline of this
run):
- baseline: stock vision attention, `processor(...)` + `model.generate` on batches of 8, dynamic cache;
- agreement: greedy agreement of the engine with plain `generate` on the same pages (same patched model);
- continuous_1, _8, _32, _64: the continuous engine (`dharma_train/evaluation/continuous.py`) as evaluation runs it on
  CUDA: prompts in chunks of 8,192 tokens beside the decode tokens, attention over each slot's live keys, varlen
  vision attention;
- whole_prompts_64: issue 32 item 2 off: every waiting prompt written in one step (`prefill_chunk_tokens=0`), so
  decoding stops while slots refill, as before chunking;
- masked_64: item 3's attention off: masked matmuls over each slot's whole cache instead of the varlen kernel;
- compiled_64: item 3's fusion on: the decode step compiled by torch.compile before its CUDA graph;
- looping: the same pages, 10 % of them bound at 2,048 tokens, with and without the loop stop; the detector's
  verdicts replayed on those full-length generations;
- profile: a torch.profiler summary of a 64-slot run (profile.txt);
- int4 (AWQ W4A16's layout: symmetric int4, groups of 128, language linears) against the bf16 rows: on torch's
  int4 kernel alone (tinygemm, prefill included: the path before issue 32), and with the kernels the chooser
  (`dharma_train/models/int4_chooser.py`) picks per layer shape at each slot count (tinygemm, gemlite where
  installed, or the dequantized bf16 matmul) with prefill on the dequantized bf16 weights; each chosen row keeps
  the chooser's timings and `decode_backend`; plus exact-unpack checks of the stored layouts against the real
  CUDA packers (gemlite rows need gemlite's wheel in .whl: docs/quantization.md, "int4 that pays").
Rows with the engine report decode-only tokens/s (tokens of steps without prompt tokens over those steps' GPU time)
and the prefill share (vision tower and steps that wrote prompts, over the row's wall time).

Run on the device from the repository root (extra arguments go to the benchmark, e.g. --pages 64); all the sections
together take longer than one call, so in two calls:
    run(command="bash scripts/gpu.sh timeout 520 python3 -m scripts.benchmarks.bench_generation --sections
        baseline,agreement,continuous_64,whole_prompts_64,masked_64,compiled_64,profile", carry=[".whl"])
    run(command="bash scripts/gpu.sh timeout 520 python3 -m scripts.benchmarks.bench_generation --sections
        baseline,continuous_1,continuous_8,continuous_32,continuous_64,looping,int4", carry=[".whl"])
The first holds issue 32's rows (items 2 and 3, about 5 minutes by estimate).
CPU smoke test of the engine rows (tiny model, seconds): python -m scripts.benchmarks.bench_generation --shape tiny
    --device cpu --pages 6 --new-tokens 8 --sections baseline,agreement,continuous_8,whole_prompts_64,masked_64
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from contextlib import contextmanager, nullcontext
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


def tiny_model(device: str):
    """The embedded tiny Qwen2.5-VL (CPU smoke runs of this benchmark), fp32 on the CPU, bf16 on CUDA."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from dharma_train.models.tiny import tiny_model_dir

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir(), dtype=dtype).to(device).eval()


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


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
    sync(model.device)
    start = time.perf_counter()
    for offset in range(0, len(pages), batch_size):
        batch = pages[offset:offset + batch_size]
        inputs = processor(images=[Image.open(p.image).convert("RGB") for p in batch], text=[prompt] * len(batch),
                           padding=True, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        outputs += [row[row != tokenizer.pad_token_id].tolist() for row in out[:, inputs["input_ids"].shape[1]:]]
    sync(model.device)
    return outputs, time.perf_counter() - start


@contextmanager
def masked_attention():
    """The engine's attention as masked matmuls over each slot's whole cache (the path before the varlen kernel)."""
    from dharma_train.evaluation import slots

    saved = slots.flash_available
    slots.flash_available = lambda dtype, device: False
    try:
        yield
    finally:
        slots.flash_available = saved


def engine(model, processor, pages, slots, new_tokens, bounds=None, loop_stop=None, chunk_tokens=8192,
           compile_step=False):
    """The continuous engine as `generate(engine="continuous")` runs it: results, seconds, counters."""
    from dharma_train.evaluation.continuous import ContinuousGenerator

    generator = ContinuousGenerator(model, processor, prompt_for(processor), new_tokens, slots,
                                    processor.tokenizer.eos_token_id, None, loop_stop, use_graph=True, seed=None,
                                    prefill_chunk_tokens=chunk_tokens, compile_step=compile_step)
    sync(model.device)
    start = time.perf_counter()
    results = generator.run([p.image for p in pages], progress=False, bounds=bounds)
    sync(model.device)
    return results, time.perf_counter() - start, generator.stats


def add_row(name, batch, pages, tokens, seconds, stats=None, **extra):
    row = {"config": name, "batch": batch, "pages": pages, "new_tokens": tokens, "seconds": seconds,
           "new_tokens_per_second": tokens / seconds, **extra}
    if stats:
        row.update(stats, prefill_share=stats["prefill_seconds"] / seconds,
                   decode_tokens_per_second=stats["decode_tokens"] / max(stats["decode_seconds"], 1e-9))
    baseline = REPORT.get("baseline_tokens_per_second")
    row["x_baseline"] = row["new_tokens_per_second"] / baseline if baseline else 1.0
    REPORT["rows"].append(row)
    print(f"ROW {name}: {row['new_tokens_per_second']:.0f} new tok/s ({row['x_baseline']:.1f}x), "
          f"{seconds:.2f} s, {pages} pages" + (f", decode-only {row['decode_tokens_per_second']:.0f} tok/s, "
                                               f"prefill {stats['prefill_seconds']:.2f} s "
                                               f"({row['prefill_share']:.0%}), {stats['mixed_steps']} mixed steps"
                                               if stats else ""),
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


def section(name, function):
    """Run one part; a failure is recorded and printed, and the rest still runs."""
    start = time.perf_counter()
    try:
        function()
    except Exception as error:  # noqa: BLE001 - the benchmark reports every part it could measure
        REPORT["notes"][f"{name}_error"] = repr(error)
        traceback.print_exc()
    print(f"[{name}: {time.perf_counter() - start:.1f} s]", flush=True)
    Path(REPORT["out"], "bench_generation.json").write_text(json.dumps(REPORT, indent=2, default=str))


SECTIONS = ("baseline", "agreement", "continuous_1", "continuous_8", "continuous_32", "continuous_64",
            "whole_prompts_64", "masked_64", "compiled_64", "looping", "profile", "int4")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--loop-tokens", type=int, default=2048)
    parser.add_argument("--sections", default="all", help=f"comma-separated parts of {', '.join(SECTIONS)}; "
                                                           "default: all")
    parser.add_argument("--shape", choices=("3b", "tiny"), default="3b")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    wanted = set(SECTIONS) if args.sections == "all" else set(args.sections.split(","))
    if wanted - set(SECTIONS):
        parser.error(f"unknown sections {sorted(wanted - set(SECTIONS))}; known: {', '.join(SECTIONS)}")
    REPORT["out"] = args.out

    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.evaluation.loop_stop import LoopStop, replay_early_stop
    from dharma_train.models.loading import load_processor
    from dharma_train.models.tiny import tiny_model_dir
    from dharma_train.models.vision_attention import use_varlen_vision_attention

    work = Path(tempfile.mkdtemp())
    tiny = args.shape == "tiny"
    width, height = (224, 308) if tiny else (896, 1288)
    processor = load_processor(str(tiny_model_dir(work / "cache")), max_pixels=None if tiny else width * height)
    pages = generate_pages(work / "pages", args.pages, seed=0, width=width, height=height,
                           workers=min(8, os.cpu_count() or 1)).pages
    model = tiny_model(args.device) if tiny else model_3b(processor.tokenizer)
    REPORT.update(gpu=torch.cuda.get_device_name() if args.device == "cuda" else "cpu", torch=torch.__version__,
                  transformers=__import__("transformers").__version__, shape=args.shape,
                  parameters=sum(p.numel() for p in model.parameters()), new_tokens=args.new_tokens)
    n = args.new_tokens
    state: dict = {}

    def baseline():
        plain_generate(model, processor, pages[:8], 8, 8)  # warm-up: kernels, allocator
        outputs, seconds = plain_generate(model, processor, pages[:8], 8, n)
        REPORT["baseline_tokens_per_second"] = sum(map(len, outputs)) / seconds
        add_row("plain model.generate, batch 8 (baseline)", 8, len(outputs), sum(map(len, outputs)), seconds)

    def agreement():
        reference, _ = plain_generate(model, processor, pages[:8], 8, 64)
        ours, _, _ = engine(model, processor, pages[:8], 8, 64)
        chunked, _, _ = engine(model, processor, pages[:8], 8, 64, chunk_tokens=640)  # prompts over 3 steps
        for name, results in (("greedy_agreement_3b", ours), ("greedy_agreement_chunks_of_640", chunked)):
            differences = [first_difference(r, o.tokens) for r, o in zip(reference, results)]
            REPORT[name] = {"pages": len(reference), "new_tokens": 64, "identical": differences.count(-1),
                            "first_difference": differences}
            print(f"{name} with plain generate ({len(reference)} pages x 64 tokens):", REPORT[name], flush=True)

    def continuous(slots, count, label=None, masked=False, **options):
        def run():
            with masked_attention() if masked else nullcontext():
                warm = pages[:slots]  # warm-up at the timed run's cache size: its graph, and its compile if asked
                engine(model, processor, warm, slots, n, bounds=[n] + [min(8, n)] * (len(warm) - 1), **options)
                results, seconds, stats = engine(model, processor, pages[:count], slots, n, **options)
            add_row(label or f"continuous engine, {slots} slots", slots, count, sum(r.decoded for r in results),
                    seconds, stats)
            state[label or slots] = seconds
        return run

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

    def profile():
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
        sort = "cuda_time_total" if args.device == "cuda" else "cpu_time_total"
        with torch_profile(activities=activities) as prof:
            engine(model, processor, pages[:64], 64, 32)
        Path(args.out, "profile.txt").write_text(prof.key_averages().table(sort_by=sort, row_limit=25))
        print(prof.key_averages().table(sort_by=sort, row_limit=12), flush=True)

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

    sections = {
        "baseline": baseline, "agreement": agreement,
        "continuous_1": continuous(1, min(4, args.pages)), "continuous_8": continuous(8, min(16, args.pages)),
        "continuous_32": continuous(32, min(64, args.pages)), "continuous_64": continuous(64, args.pages),
        "whole_prompts_64": continuous(64, args.pages, "64 slots, whole prompts (prefill_chunk_tokens=0)",
                                       chunk_tokens=0),
        "masked_64": continuous(64, args.pages, "64 slots, masked attention over the whole cache", masked=True),
        "compiled_64": continuous(64, args.pages, "64 slots, decode step compiled (compile_decode)",
                                  compile_step=True),
        "looping": looping, "profile": profile, "int4": int4}
    for name in SECTIONS:
        if name in wanted:
            section(name, sections[name])
        if name == "baseline":  # every engine row runs the varlen vision attention
            REPORT["vision_layers_patched"] = use_varlen_vision_attention(model)
    REPORT["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
    Path(args.out, "bench_generation.json").write_text(json.dumps(REPORT, indent=2, default=str))
    print(f"\n{REPORT['gpu']}, torch {REPORT['torch']}, transformers {REPORT['transformers']}, "
          f"{REPORT['parameters'] / 1e9:.2f}B parameters, {n} new tokens/page")
    print("| configuration | pages | new tokens/s | x baseline | decode-only tok/s | seconds (prefill share) |")
    print("|---|---|---|---|---|---|")
    for row in REPORT["rows"]:
        decode = f"{row['decode_tokens_per_second']:.0f}" if "decode_tokens_per_second" in row else ""
        share = f" ({row['prefill_share']:.0%})" if "prefill_share" in row else ""
        print(f"| {row['config']} | {row['pages']} | {row['new_tokens_per_second']:.0f} | {row['x_baseline']:.1f}x | "
              f"{decode} | {row['seconds']:.2f}{share} |")
    print(f"peak memory {REPORT['peak_memory_gib']} GiB; notes: {REPORT['notes']}")


if __name__ == "__main__":
    main()
