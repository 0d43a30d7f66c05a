"""Where a decode step's time goes, and how close it comes to the memory bound: the continuous engine's step on the
3B shape, measured without pages.

For 1, 8 and 64 slots, 1,600 cached positions in every slot (a page's prompt), a cache of 2,048 positions:
- variants, in the order given (`--variants`): `masked`: attention as masked matmuls over the whole cache (how the
  engine attended before issue 32's item 3); `flash`: the varlen kernel reading only each slot's live keys (the
  engine's path on CUDA); `compiled`: flash, and the step fused by torch.compile before its CUDA graph is captured
  (64 slots only: one compile takes about a minute); `liger`: liger's fused RMSNorm / SwiGLU / rope patched into
  the model, then flash (it stays patched for later variants); `int4`: the language linears on torch's int4 kernel
  (AWQ W4A16's layout), then flash;
- replay: the CUDA-graph step replayed back to back (GPU time per step, CUDA events);
- loop: the same step as the engine runs it (replay, token choice, pinned copy back, wait one step behind);
- memory bound: the bytes a step must read once (the language layers' and lm_head's weights, every slot's live keys
  and values) over the device-to-device copy bandwidth measured here; `bound_fraction` = bound time / replay time;
- kernels: CUDA kernels in one eager step and their summed device time (torch.profiler), the top ones by time;
- agreement: flash and compiled logits against masked logits on the same cache (64 slots), and a mixed step's
  (two decoding slots, two prompt chunks, one starting mid-prompt) through the varlen kernel against masked;
and the prompt step of 8 pages (one mixed step, whole prompts) beside their vision tower.

Run on the device (scripts.benchmarks.bench_generation is the full benchmark):
    run(command="bash scripts/gpu.sh timeout 400 python3 -m scripts.benchmarks.bench_decode_step", carry=[".whl"])
"""

from __future__ import annotations

import argparse
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
CACHED, CAPACITY = 1600, 2048


def copy_bandwidth(gigabytes: float = 4.0) -> float:
    """Bytes per second a device-to-device copy moves, counting what it reads and what it writes."""
    source = torch.empty(int(gigabytes * 2**30), dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    target.copy_(source)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        target.copy_(source)
    end.record()
    end.synchronize()
    seconds = start.elapsed_time(end) / 1000
    del source, target
    torch.cuda.empty_cache()
    return 2 * int(gigabytes * 2**30) * 10 / seconds


def step_bytes(model, slots: int) -> dict:
    """What one decode step must read at least: the language layers, final norm and lm_head weights, and each slot's
    live keys and values (its cached positions and the new one)."""
    text = model.model.language_model
    weights = sum(t.numel() * t.element_size() for module in (text.layers, text.norm, model.lm_head)
                  for t in list(module.parameters()) + list(module.buffers()))
    config = text.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_position = config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * 2  # bf16 keys and values
    return {"weights": weights, "kv": slots * (CACHED + 1) * per_position}


def prepared_decoder(model, slots: int, variant: str):
    """A decoder with every slot live at CACHED positions of random keys and values, its graph captured."""
    from dharma_train.evaluation.slots import SlotDecoder

    decoder = SlotDecoder(model, slots, CAPACITY, use_graph=True, compile_step=variant == "compiled")
    if variant == "masked":
        decoder.flash = False
    generator = torch.Generator(device="cuda").manual_seed(0)
    for buffer in decoder.keys + decoder.values:
        buffer.normal_(generator=generator)
    decoder.live.fill_(True)
    decoder.position.fill_(CACHED)
    decoder.tokens.random_(0, model.config.text_config.vocab_size, generator=generator)
    decoder.step()  # captures the graph (compiling first when asked)
    decoder.position.fill_(CACHED)
    return decoder


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
    previous = None
    torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(repeats):
        chosen = decoder.step().argmax(dim=-1)
        decoder.tokens.copy_(chosen)
        buffers[step % 2].copy_(chosen, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        if previous is not None:
            previous.synchronize()
            buffers[(step - 1) % 2].tolist()
        previous = done
        decoder.position.fill_(CACHED)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000 / repeats


def eager_kernels(decoder) -> dict:
    """Kernels of one step run without its graph (compiled code included): count, summed device time, the top 8."""
    from torch.profiler import ProfilerActivity, profile

    decoder.decode()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        decoder.decode()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    by_name: Counter = Counter()
    for event in kernels:
        by_name[event.name[:70]] += event.device_time_total
    return {"kernels": len(kernels), "kernel_ms": sum(e.device_time_total for e in kernels) / 1000,
            "top_ms": {name: round(us / 1000, 3) for name, us in by_name.most_common(8)}}


def measure_steps(model, variant: str, slot_counts, bandwidth: float) -> None:
    from dharma_train.evaluation.slot_attention import SLOT_ATTENTION
    from dharma_train.evaluation.slots import text_attention

    for slots in slot_counts:
        with text_attention(model, SLOT_ATTENTION), torch.inference_mode():
            decoder = prepared_decoder(model, slots, variant)
            row = {"variant": variant, "attention": "flash" if decoder.flash else "masked", "slots": slots,
                   "compiled": decoder.compiled, "graph": decoder.graph is not None, "replay_ms": replay_ms(decoder),
                   "loop_ms": engine_loop_ms(decoder)}
            if slots in (1, 64):
                row.update(eager_kernels(decoder))
        needed = step_bytes(model, slots)
        row.update(weight_read_gb=needed["weights"] / 1e9, kv_read_gb=needed["kv"] / 1e9,
                   bound_ms=(needed["weights"] + needed["kv"]) / bandwidth * 1000,
                   tokens_per_second_at_replay=slots / row["replay_ms"] * 1000)
        row["bound_fraction"] = row["bound_ms"] / row["replay_ms"]
        REPORT["steps"].append(row)
        print("STEP", json.dumps(row), flush=True)
        del decoder
        torch.cuda.empty_cache()


def agreement(model, slots: int = 64) -> dict:
    """Flash and compiled logits against masked logits, on one decoder's cache (each run writes the same keys)."""
    from dharma_train.evaluation.slot_attention import SLOT_ATTENTION
    from dharma_train.evaluation.slots import text_attention

    with text_attention(model, SLOT_ATTENTION), torch.inference_mode():
        decoder = prepared_decoder(model, slots, "flash")
        decoder.flash = False
        masked = decoder._decode_forward().float()
        decoder.flash = True
        logits = {"flash": decoder._decode_forward().float()}
        del decoder
        try:  # on its own: the compile failed on an H100 (torch 2.11) where the eager kernel ran, 2026-12-08
            decoder = prepared_decoder(model, slots, "compiled")  # same seed: the same cache as the one above
            logits["compiled"] = decoder.decode().float()
            del decoder
        except Exception as error:  # noqa: BLE001 - flash's and the mixed step's agreement still count
            print("compiled agreement failed:", repr(error)[:600], flush=True)
        torch.cuda.empty_cache()
        logits["mixed_step_flash"], masked_mixed = mixed_step_logits(model)
    result = {}
    for name, value in logits.items():
        reference = masked_mixed if name == "mixed_step_flash" else masked
        result[name] = {"max_abs_difference": float((value - reference).abs().max()),
                        "logit_scale": float(reference.abs().max()), "rows": value.shape[0],
                        "same_argmax": int((value.argmax(-1) == reference.argmax(-1)).sum())}
    torch.cuda.empty_cache()
    return result


def mixed_step_logits(model, slots: int = 4):
    """One mixed step, varlen kernel and masked: slots 0 and 2 decoding at CACHED, slot 1 taking a prompt's first
    700 tokens and slot 3 a prompt's tokens 300 to 800 (random embeddings); every row's logits, both ways."""
    from dharma_train.evaluation.slots import Chunk, SlotDecoder

    decoder = SlotDecoder(model, slots, CAPACITY, use_graph=False)
    generator = torch.Generator(device="cuda").manual_seed(1)
    for buffer in decoder.keys + decoder.values:
        buffer.normal_(generator=generator)
    decoder.live[[0, 2]] = True
    decoder.tokens.random_(0, model.config.text_config.vocab_size, generator=generator)
    hidden = model.config.text_config.hidden_size
    chunks = []
    for slot, start, length in ((1, 0, 700), (3, 300, 500)):
        embeds = torch.randn(length, hidden, device="cuda", dtype=torch.bfloat16, generator=generator) * 0.02
        chunks.append(Chunk(slot=slot, start=start, embeds=embeds,
                            positions=torch.arange(start, start + length, device="cuda").expand(3, length)))
    outputs = []
    for flash in (True, False):
        decoder.flash = flash
        decoder.position.fill_(CACHED)
        decode_logits, last_logits = decoder.mixed_step(chunks)
        outputs.append(torch.cat([decode_logits, last_logits]).float())
    return outputs


def measure_prefill(model, processor, pages, variant: str) -> None:
    """8 pages' vision tower, then their whole prompts in one mixed step (all slots parked)."""
    from PIL import Image

    from dharma_train.evaluation.slot_attention import SLOT_ATTENTION
    from dharma_train.evaluation.slots import Chunk, SlotDecoder, text_attention
    from dharma_train.evaluation.vision_stage import VisionFeatures, embed_with_images, encode_pages

    prompt = prompt_for(processor)
    inputs = [dict(processor(images=[Image.open(p.image).convert("RGB")], text=[prompt], return_tensors="pt"))
              for p in pages]
    decoder = SlotDecoder(model, len(pages), CAPACITY, use_graph=False)
    timings = {}
    with text_attention(model, SLOT_ATTENTION), torch.inference_mode():
        def vision():
            return encode_pages(model, inputs, [(str(i),) for i in range(len(pages))], VisionFeatures())

        def prompts():
            chunks = []
            for slot, (page_inputs, features) in enumerate(zip(inputs, vision())):
                ids = page_inputs["input_ids"].to("cuda")
                positions, _ = model.model.get_rope_index(page_inputs["input_ids"], page_inputs["mm_token_type_ids"],
                                                          image_grid_thw=page_inputs["image_grid_thw"],
                                                          attention_mask=page_inputs["attention_mask"])
                chunks.append(Chunk(slot=slot, start=0, embeds=embed_with_images(model, ids, [features])[0],
                                    positions=positions[:, 0].to("cuda")))
            return decoder.mixed_step(chunks)

        for name, run in (("vision", vision), ("prompts", prompts)):
            run()
            torch.cuda.synchronize()
            start = time.perf_counter()
            run()
            torch.cuda.synchronize()
            timings[name] = time.perf_counter() - start
    row = {"variant": variant, "pages": len(pages), "vision_s": timings["vision"],
           "vision_and_prompt_step_s": timings["prompts"], "prompt_tokens": int(inputs[0]["input_ids"].shape[1])}
    REPORT["prefill"].append(row)
    print("PREFILL", json.dumps(row), flush=True)


def save():
    (OUT / "bench_decode_step.json").write_text(json.dumps(REPORT, indent=2))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", nargs="+", default=["masked", "flash", "compiled"],
                        choices=["masked", "flash", "compiled", "liger", "int4"])
    parser.add_argument("--slots", nargs="+", type=int, default=[1, 8, 64])
    args = parser.parse_args()

    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.models.loading import load_processor
    from dharma_train.models.tiny import tiny_model_dir
    from dharma_train.models.vision_attention import use_varlen_vision_attention

    work = Path(tempfile.mkdtemp())
    processor = load_processor(str(tiny_model_dir(work / "cache")), max_pixels=1288 * 896)
    pages = generate_pages(work / "pages", 8, seed=0, width=896, height=1288, workers=8).pages
    model = model_3b(processor.tokenizer)
    use_varlen_vision_attention(model)
    bandwidth = copy_bandwidth()
    REPORT.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, copy_bandwidth_tb_s=bandwidth / 1e12,
                  cached_positions=CACHED, capacity=CAPACITY)
    print(f"device-to-device copy: {bandwidth / 1e12:.2f} TB/s (read + written)", flush=True)
    if "masked" in args.variants and "flash" in args.variants:
        try:
            REPORT["agreement_with_masked"] = agreement(model, max(args.slots))
            print("AGREEMENT", json.dumps(REPORT["agreement_with_masked"]), flush=True)
        except Exception as error:  # noqa: BLE001 - the variants still run
            REPORT["agreement_error"] = repr(error)
            print("agreement failed:", repr(error), flush=True)
        save()
    for variant in args.variants:
        try:
            if variant == "liger":
                from liger_kernel.transformers import apply_liger_kernel_to_qwen2_5_vl

                apply_liger_kernel_to_qwen2_5_vl(model=model, rope=True, rms_norm=True, swiglu=True,
                                                 fused_linear_cross_entropy=False, cross_entropy=False)
            if variant == "int4":
                bf16_bytes = weight_bytes(model)
                to_int4(model)
                REPORT["weight_ratio_int4"] = weight_bytes(model) / bf16_bytes
            measure_steps(model, variant, [max(args.slots)] if variant == "compiled" else args.slots, bandwidth)
            if variant in ("flash", "int4"):
                measure_prefill(model, processor, pages, variant)
                torch.cuda.empty_cache()
        except Exception as error:  # noqa: BLE001 - the other variants still run
            REPORT[f"{variant}_error"] = repr(error)
            print(f"{variant} failed:", repr(error), flush=True)
        save()
    print("| variant | slots | replay ms/step | engine loop ms/step | memory bound ms | of the bound | "
          "kernels/step (eager) | kernel ms |")
    for row in REPORT["steps"]:
        print(f"| {row['variant']} | {row['slots']} | {row['replay_ms']:.2f} | {row['loop_ms']:.2f} | "
              f"{row['bound_ms']:.2f} | {row['bound_fraction']:.0%} | {row.get('kernels', '')} | "
              f"{row.get('kernel_ms', '')} |")


if __name__ == "__main__":
    main()
