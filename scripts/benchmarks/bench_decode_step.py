"""Where a decode step's time goes: the continuous engine's step on the 3B shape, measured without pages.

For 1, 8 and 64 slots with 1,600 cached positions each (a page's prompt), and for bf16, bf16 with liger's fused
RMSNorm / SwiGLU / rope kernels, int4 (tinygemm) and int4 with liger:
- replay: the CUDA-graph step replayed back to back (GPU time per step, CUDA events);
- loop: the same step as the engine runs it (replay, token choice, pinned copy back, wait one step behind);
- kernels: CUDA kernels in one eager step and their summed device time (torch.profiler), top kernels by time;
and the prefill of 8 pages split into the vision tower and the whole prefill.

Run on the device (scripts.benchmarks.bench_generation is the full benchmark):
    run(command="bash scripts/gpu.sh timeout 330 python3 -m scripts.benchmarks.bench_decode_step", carry=[".whl"])
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from scripts.benchmarks.bench_generation import model_3b, prompt_for, to_int4, weight_bytes

OUT = Path(os.environ.get("OUT", "."))
REPORT: dict = {"steps": [], "prefill": []}


def replay_ms(decoder, repeats=40) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    decoder.graph.replay()
    start.record()
    for _ in range(repeats):
        decoder.graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / repeats


def engine_loop_ms(decoder, repeats=40) -> float:
    """Replay, argmax, copy the tokens back through pinned memory, wait for the previous step: the engine's loop."""
    buffers = [torch.empty(decoder.slots, dtype=torch.long, pin_memory=True) for _ in range(2)]
    saved = decoder.cache.write_at.clone()
    previous = None
    torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(repeats):
        logits = decoder.step()
        chosen = logits.argmax(dim=-1)
        decoder.tokens.copy_(chosen)
        buffers[step % 2].copy_(chosen, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        if previous is not None:
            previous.synchronize()
            buffers[(step - 1) % 2].tolist()
        previous = done
        decoder.cache.write_at.copy_(saved)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000 / repeats


def eager_kernels(decoder) -> dict:
    from torch.profiler import ProfilerActivity, profile

    decoder._forward()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        decoder._forward()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    by_name: Counter = Counter()
    for event in kernels:
        by_name[event.name[:70]] += event.device_time_total
    return {"kernels": len(kernels), "kernel_ms": sum(e.device_time_total for e in kernels) / 1000,
            "top_ms": {name: round(us / 1000, 3) for name, us in by_name.most_common(8)}}


def measure_steps(model, variant: str) -> None:
    from dharma_train.evaluation.slots import SLOT_ATTENTION, SlotDecoder, text_attention

    for slots in (1, 8, 64):
        decoder = SlotDecoder(model, slots, 2048, use_graph=True)
        with text_attention(model, SLOT_ATTENTION), torch.inference_mode():
            decoder.cache.write_at.fill_(1600)
            decoder.tokens.random_(0, 150000)
            decoder.step()
            decoder.cache.write_at.fill_(1600)
            row = {"variant": variant, "slots": slots, "graph": decoder.graph is not None,
                   "replay_ms": replay_ms(decoder), "loop_ms": engine_loop_ms(decoder)}
            if slots in (1, 64):
                row.update(eager_kernels(decoder))
        row["tokens_per_second_at_replay"] = slots / row["replay_ms"] * 1000
        REPORT["steps"].append(row)
        print("STEP", json.dumps(row), flush=True)
        del decoder
        torch.cuda.empty_cache()


def measure_prefill(model, processor, pages, variant: str) -> None:
    from PIL import Image

    from dharma_train.evaluation.slots import SlotDecoder

    prompt = prompt_for(processor)
    inputs = processor(images=[Image.open(p.image).convert("RGB") for p in pages], text=[prompt] * len(pages),
                       return_tensors="pt").to("cuda")
    decoder = SlotDecoder(model, len(pages), 2048, use_graph=False)
    timings = {}
    with torch.inference_mode():
        for name, run in (("vision", lambda: model.model.visual(inputs["pixel_values"].to(torch.bfloat16),
                                                                grid_thw=inputs["image_grid_thw"])),
                          ("prefill", lambda: decoder.prefill(dict(inputs), list(range(len(pages)))))):
            run()
            torch.cuda.synchronize()
            start = time.perf_counter()
            run()
            torch.cuda.synchronize()
            timings[name] = time.perf_counter() - start
    row = {"variant": variant, "pages": len(pages), "vision_s": timings["vision"], "prefill_s": timings["prefill"],
           "prompt_tokens": int(inputs["input_ids"].shape[1])}
    REPORT["prefill"].append(row)
    print("PREFILL", json.dumps(row), flush=True)
    del decoder
    torch.cuda.empty_cache()


def save():
    (OUT / "bench_decode_step.json").write_text(json.dumps(REPORT, indent=2))


def main():
    from liger_kernel.transformers import apply_liger_kernel_to_qwen2_5_vl

    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.models.loading import load_processor
    from dharma_train.models.tiny import tiny_model_dir
    from dharma_train.models.vision_attention import use_varlen_vision_attention

    work = Path(tempfile.mkdtemp())
    processor = load_processor(str(tiny_model_dir(work / "cache")), max_pixels=1288 * 896)
    pages = generate_pages(work / "pages", 8, seed=0, width=896, height=1288, workers=8).pages
    model = model_3b(processor.tokenizer)
    use_varlen_vision_attention(model)
    REPORT.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__)
    measure_steps(model, "bf16")
    measure_prefill(model, processor, pages, "bf16")
    save()
    suffix = " + liger"
    try:
        apply_liger_kernel_to_qwen2_5_vl(model=model, rope=True, rms_norm=True, swiglu=True,
                                         fused_linear_cross_entropy=False, cross_entropy=False)
        measure_steps(model, "bf16" + suffix)
    except Exception as error:  # noqa: BLE001 - still measure int4 without it
        REPORT["liger_error"], suffix = repr(error), ""
        print("liger failed:", repr(error), flush=True)
    save()
    bf16_bytes = weight_bytes(model)
    to_int4(model)
    REPORT["weight_ratio_int4"] = weight_bytes(model) / bf16_bytes
    measure_steps(model, "int4" + suffix)
    measure_prefill(model, processor, pages, "int4" + suffix)
    save()
    print("| variant | slots | replay ms/step | engine loop ms/step | kernels/step (eager) | kernel ms |")
    for row in REPORT["steps"]:
        print(f"| {row['variant']} | {row['slots']} | {row['replay_ms']:.2f} | {row['loop_ms']:.2f} | "
              f"{row.get('kernels', '')} | {row.get('kernel_ms', '')} |")


if __name__ == "__main__":
    main()
