"""Training speed on one GPU: a plain transformers/TRL run against dharma_train's path, same model, same data.

Model: random-init Qwen2.5-VL shapes (3B: 3.75B parameters; 7B: 8.3B), full 151,936/152,064 vocabulary, special
token ids of the offline tiny tokenizer, so the real processor, chat template and TRL collator build every batch.
Data: synthetic pages in three sizes (560 to 1,472 image tokens) with answers from ~70 to ~2,000 tokens, in one
shuffled order shared by every configuration (same seed, same batches).

baseline: what a plain TRL user runs: `SFTTrainer` on the stock model (sdpa, transformers' per-window vision
attention, padded batches, no fused kernels), gradient checkpointing on every layer, data loaded in the training
process. TRL 1.16 already fuses the LM head's cross-entropy, and transformers 5.17 already defaults to fused AdamW.
dharma_train: the SFT stage's own path: `load_model`'s varlen vision attention, `performance.speed_up` and
`trainer_arguments` built from `TrainerConfig` (conf/trainer/gpu.yaml unless overridden).
Both train the same parameters: full fine-tuning keeps fp32 master weights under bf16 autocast (dharma_train's
precision rule) and freezes the vision tower unless "+vision" is named; LoRA puts r=16 adapters on every
language-model linear and freezes the rest.

Per configuration: useful (non-pad) tokens/s, MFU (6 x all parameters x useful tokens / step time / 989 TFLOP/s,
the issue's convention), peak memory, the ratio to the baseline of the same method, the token budget and gradient
accumulation, recompute policy and compile state chosen, and the loss of the first 10 steps; each compiled row's
losses are compared with the eager row of the same plan (same batches).

    run(command="TOKENIZERS_PARALLELISM=false bash scripts/gpu.sh python3 -m scripts.benchmarks.bench_training
        --configs baseline-lora ours-lora --check --profile ours-full", carry=[".whl"])

Issue 33 item 3 on one 80 GB H100 (not yet run; sized to finish in 9 min): master weights in the optimizer against
fp32 parameters under autocast, on the plan the eager row chose (plan=previous: the same batches, so each row's
losses are checked against it), then with its own plan, full fine-tuning and LoRA:

    run(command="TOKENIZERS_PARALLELISM=false timeout 540 bash scripts/gpu.sh
        python3 -m scripts.benchmarks.bench_training --steps 6 --configs ours-full:compile=off ours-full:plan=previous
        ours-full:master_weights=optimizer,plan=previous ours-full:master_weights=optimizer ours-lora
        ours-lora:master_weights=optimizer,plan=previous", carry=[".whl"])

Issue 33's run on one 80 GB H100 (plain TRL against the defaults, full and LoRA, compiled against eager; ~8 min):

    run(command="TOKENIZERS_PARALLELISM=false timeout 540 bash scripts/gpu.sh
        python3 -m scripts.benchmarks.bench_training --steps 6 --configs baseline-full ours-full ours-full:compile=off baseline-lora ours-lora:compile=on
        ours-lora", carry=[".whl"])
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from dharma_train.models.hub_layout import shape_configs

PEAK_TFLOPS = 989.0  # H100/H200 SXM dense bf16 (datasheet), the MFU convention

TEXT_3B, VISION_3B = shape_configs("3b")  # Qwen2.5-VL-3B's sizes, written once for every benchmark
SHAPES = {
    "3b": ({"vocab_size": 151936, **{k: v for k, v in TEXT_3B.items() if k != "rope_parameters"},
            "tie_word_embeddings": True}, 2048),
    "7b": ({"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
            "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False}, 3584),
}
# the 3B widths with 8 decoder layers and 8 vision blocks: what `compile` costs and gains per layer, in less time
SHAPES["3b-8"] = ({**SHAPES["3b"][0], "num_hidden_layers": 8}, 2048)
VISION_DEPTH = {"3b-8": (8, [3, 7])}  # (blocks, full-attention block indexes); others: Qwen2.5-VL's
# (width, height) of the pages and their share; image tokens 560 / 962 / 1,472 at 28 px per merged token
PAGE_SIZES = [((560, 784), 1), ((728, 1036), 1), ((896, 1288), 2)]
ANSWER_PARTS = [1, 1, 2, 4]  # answers joined per page: short (~70-670 tokens) up to long (~1,500-2,000)


def model_config(tokenizer, shape: str):
    """The shape's Qwen2_5_VLConfig with `tokenizer`'s special-token ids (the vision tower is Qwen2.5-VL's)."""
    from transformers import Qwen2_5_VLConfig

    text, out_hidden = SHAPES[shape]
    depth, full_attention = VISION_DEPTH.get(shape, (VISION_3B["depth"], VISION_3B["fullatt_block_indexes"]))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    config = Qwen2_5_VLConfig(
        text_config={**text, "max_position_embeddings": 128000, "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"], "bos_token_id": None,
                     "rope_parameters": TEXT_3B["rope_parameters"]},  # 7B's rotary is the same
        vision_config={**VISION_3B, "depth": depth, "fullatt_block_indexes": full_attention,
                       "out_hidden_size": out_hidden},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=text["tie_word_embeddings"])
    return config


def build_model(tokenizer, shape: str, dtype: torch.dtype):
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = model_config(tokenizer, shape)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model


def make_pages(work: Path, count: int):
    """Pages of three sizes; some answers are several pages' answers joined, for the long tail of dense pages."""
    from dharma_train.data.pages import Page, PageSet
    from dharma_train.data.schema import PageAnswer
    from dharma_train.data.synthetic.generate import generate_pages

    sizes = [size for size, share in PAGE_SIZES for _ in range(share)]
    rng = random.Random(0)
    pages = []
    for index in range(count):
        width, height = sizes[index % len(sizes)]
        parts = generate_pages(work / f"page{index}", ANSWER_PARTS[index % len(ANSWER_PARTS)], seed=index,
                               width=width, height=height, max_words=600).pages
        answer = PageAnswer(header=parts[0].answer.header, margin=parts[0].answer.margin,
                            footer=parts[0].answer.footer, text="\n".join(p.answer.text for p in parts))
        pages.append(Page(id=f"page{index}", image=parts[0].image, answer=answer, family=parts[0].family))
    rng.shuffle(pages)
    return PageSet(root=work, pages=pages)


class StepTimer:
    """Trainer callback: wall time and useful tokens of every optimizer step after the warm-up ones."""

    def __init__(self, model, warmup: int, steps: int, profile_step: int | None = None):
        from transformers import TrainerCallback

        self.warmup, self.steps, self.profile_step, self.profiler = warmup, steps, profile_step, None
        self.tokens, self.step_tokens, self.times = [], [], []
        model.register_forward_pre_hook(self._count, with_kwargs=True)
        timer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                timer.started = time.perf_counter()

            def on_step_begin(self, args, state, control, **kwargs):
                if timer.profile_step is not None and state.global_step == timer.profile_step:
                    timer.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
                    timer.profiler.__enter__()

            def on_step_end(self, args, state, control, **kwargs):
                torch.cuda.synchronize()
                timer.times.append(time.perf_counter())
                timer.step_tokens.append(int(sum(timer.tokens)) if timer.tokens else 0)
                timer.tokens.clear()
                if timer.profiler is not None and timer.profile_step is not None:
                    timer.profiler.__exit__(None, None, None)
                    timer.profile_step = None

        self.callback = Callback()

    def _count(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is not None and module.training:
            self.tokens.append(mask.sum())

    def summary(self) -> dict:
        last = self.warmup + self.steps  # a profiled step, if any, comes after the timed ones
        times, tokens = self.times[self.warmup - 1:last], self.step_tokens[self.warmup:last]
        seconds = times[-1] - times[0]
        summary = {"steps_timed": len(times) - 1, "seconds": seconds, "useful_tokens": sum(tokens),
                   "tokens_per_second": sum(tokens) / seconds,
                   "step_seconds": [round(b - a, 3) for a, b in zip(times, times[1:])],
                   "warmup_seconds": round(self.times[self.warmup - 1] - self.started, 1)}  # compiling, if any
        if len(self.times) > last:  # times[k] is when step k + 1 ended; the profiled step is step last + 1
            summary["profiled_step_seconds"] = round(self.times[last] - self.times[last - 1], 3)
        return summary


def run_config(name: str, spec: dict, pages, processor, args) -> dict:
    """Build the model and trainer of one configuration, train warm-up + timed steps, measure, free the GPU."""
    from trl import SFTConfig, SFTTrainer

    from dharma_train.data.conversation import sft_dataset
    from dharma_train.models.vision_attention import use_varlen_vision_attention
    from dharma_train.training.arguments import build_arguments
    from dharma_train.training.config import (
        LoraSettings,
        OptimizationConfig,
        TrainerConfig,
        planned_recompute,
    )
    from dharma_train.training.model_setup import freeze_vision_tower, lora_config
    from dharma_train.training.performance import PerformanceConfig, speed_up
    from dharma_train.training.performance.apply import prepare_trainer

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    left_over = torch.cuda.memory_allocated() / 2**30  # anything an earlier row failed to free
    full = spec["method"] == "full"
    performance = replace(PerformanceConfig(), **spec.get("performance", {}))
    hardware = TrainerConfig(device="cuda", precision="bf16", dataloader_workers=args.workers, logging_steps=1,
                             gradient_checkpointing=spec.get("checkpointing"), performance=performance,
                             memory_budget_gb=spec.get("budget"),
                             checkpoint_every=0)  # a benchmark resumes nothing: it writes no checkpoint
    weights = hardware.training_dtype(spec["method"]) if spec["path"] == "ours" else ("float32" if full else
                                                                                      "bfloat16")
    model = build_model(processor.tokenizer, spec.get("shape", "3b"), getattr(torch, weights))
    parameters = sum(p.numel() for p in model.parameters())
    if full and not spec.get("train_vision"):
        freeze_vision_tower(model)
    profiled = name in args.profile
    steps = args.warmup + args.steps + profiled
    optimization = OptimizationConfig(method=spec["method"],
                                      lora=LoraSettings(r=16, alpha=32, dropout=spec.get("lora_dropout",
                                                                                         LoraSettings.dropout)),
                                      learning_rate=1e-5, max_steps=steps, batch_size=args.batch,
                                      gradient_accumulation=spec.get("accumulation", 1), warmup=0,
                                      lr_scheduler="constant")
    peft = lora_config(optimization.lora) if not full else None
    output_dir = str(Path(args.work) / name)
    outcome = {}
    if spec["path"] == "baseline":
        config = SFTConfig(output_dir=output_dir, per_device_train_batch_size=args.batch, max_steps=steps,
                           learning_rate=1e-5, lr_scheduler_type="constant", bf16=True, gradient_checkpointing=True,
                           max_length=None, report_to=[], save_strategy="no", logging_steps=1, seed=0, data_seed=0)
    else:
        use_varlen_vision_attention(model)
        outcome = speed_up(model, performance, "cuda")
        config = build_arguments(SFTConfig, optimization, hardware, output_dir, [], name)
    trainer = SFTTrainer(model=model, args=config, train_dataset=sft_dataset(pages, "structured"),
                         processing_class=processor, peft_config=peft)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    row = {"config": name, **spec, "parameters": parameters, "trainable": trainable, "applied": outcome,
           "allocated_before_gib": round(left_over, 2)}
    if spec["path"] == "baseline":
        row["recompute"] = {"policy": "all"}
    else:
        started = time.perf_counter()
        prepared = prepare_trainer(trainer, hardware, name)  # as train_resumably does
        row["token_budget"] = prepared["sampler"].budget if prepared["sampler"] else None
        row["gradient_accumulation"] = trainer.args.gradient_accumulation_steps
        row["recompute"] = prepared["recompute"] or {"policy": planned_recompute(hardware)}
        row["recompute"]["probe_seconds"] = round(time.perf_counter() - started, 1)
        if prepared["compile"] is not None:
            outcome["compile"] = prepared["compile"]
        outcome["master_weights"] = "optimizer" if hardware.masters_in_optimizer() else "model"
    timer = StepTimer(trainer.model, args.warmup, args.steps, profile_step=steps - 1 if profiled else None)
    trainer.add_callback(timer.callback)
    try:
        trainer.train()
        logged = [entry for entry in trainer.state.log_history if "loss" in entry][:LOSS_STEPS]
        row["losses"] = [entry["loss"] for entry in logged]
        row["grad_norms"] = [entry.get("grad_norm") for entry in logged]  # step 1's tells a gradient from an update
        row.update(timer.summary())
        row["mfu"] = 6 * parameters * row["tokens_per_second"] / (PEAK_TFLOPS * 1e12)
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        if timer.profiler is not None:
            row["profile"] = kernel_breakdown(timer.profiler, Path(args.out) / f"profile_{name}.txt")
            # how much of the step the GPU computes; the rest it waits on the host
            row["profile"]["gpu_busy_percent"] = round(
                100 * row["profile"]["gpu_ms"] / 1e3 / row["profiled_step_seconds"], 1)
        if outcome.get("compile") == "on":
            from torch._dynamo.utils import counters

            row["dynamo"] = {"graph_breaks": sum(counters["graph_break"].values()),
                             "break_reasons": dict(counters["graph_break"].most_common(6)),
                             "unique_graphs": counters["stats"]["unique_graphs"]}
    except torch.OutOfMemoryError as error:
        row.update(error=f"out of memory: {str(error).splitlines()[0][:120]}",
                   peak_gib=torch.cuda.max_memory_allocated() / 2**30)
    except Exception as error:  # a variant that fails (compile, say) is a row of the table, not the end of the run
        import traceback

        row.update(error=f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}",
                   traceback=traceback.format_exc()[-3000:], peak_gib=torch.cuda.max_memory_allocated() / 2**30)
    del trainer, model, timer
    gc.collect()
    torch.cuda.empty_cache()
    print(json.dumps({k: v for k, v in row.items() if k not in ("profile", "traceback")}), flush=True)
    return row


LOSS_STEPS = 10  # compiled against eager over the first steps (issue 33: equal to 3 digits)


KERNEL_GROUPS = [  # first match wins; names as CUDA kernels appear in the profiler
    ("attention (flash / sdpa)", ("flash", "fmha", "attention", "cudnn")),
    ("matrix multiply", ("gemm", "cutlass", "nvjet", "xmma", "wgmma", "sm90", "ampere")),
    ("optimizer", ("adam", "multi_tensor")),
    ("liger / triton fused", ("triton", "rms_norm", "swiglu", "liger")),
    ("copies and casts", ("copy", "memcpy", "memset", "cast", "fill")),
    ("reductions", ("reduce", "sum", "norm", "softmax", "cumsum", "scan", "sort", "index")),
    ("elementwise", ("elementwise", "vectorized", "unrolled", "where", "mul", "add")),
    ("other triton (inductor)", ("_kernel",)),  # last: at::native's elementwise kernels end in _kernel too
]


def kernel_breakdown(profiler, path: Path) -> dict:
    """CUDA time per kernel group for the profiled step, plus the top kernels, written to `path`."""
    events = [e for e in profiler.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.device_time_total for e in events) or 1.0
    groups, launches = {}, 0
    for event in events:
        launches += event.count
        name = event.key.lower()
        group = next((g for g, keys in KERNEL_GROUPS if any(k in name for k in keys)), "other")
        groups[group] = groups.get(group, 0.0) + event.device_time_total
    top = sorted(events, key=lambda e: -e.device_time_total)[:25]
    lines = [f"{e.device_time_total / 1e3:10.1f} ms {e.count:7d}x  {e.key[:140]}" for e in top]
    path.write_text("\n".join(lines) + "\n")
    return {"gpu_ms": total / 1e3, "kernel_launches": launches,
            "groups_percent": {g: round(100 * t / total, 1) for g, t in sorted(groups.items(), key=lambda x: -x[1])},
            "top": lines[:12]}


def check_equivalence(pages, processor, batches: int = 3) -> dict:
    """3B shape, bf16: the plain model (padded, stock attention, transformers' loss) against dharma_train's fast path
    (varlen vision, padding-free, liger, TRL's fused LM head), same weights, SGD steps in lockstep."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling
    from trl.trainer.utils import add_fused_lm_head

    from dharma_train.data.conversation import sft_dataset
    from dharma_train.models.vision_attention import use_varlen_vision_attention
    from dharma_train.training.performance import PerformanceConfig, speed_up

    plain = build_model(processor.tokenizer, "3b", torch.bfloat16).train()
    fast = copy.deepcopy(plain)
    use_varlen_vision_attention(fast)
    applied = speed_up(fast, PerformanceConfig(), "cuda")
    add_fused_lm_head(fast)
    for model in (plain, fast):
        model.gradient_checkpointing_enable({"use_reentrant": False})
    optimizers = [torch.optim.SGD(m.parameters(), lr=1e-3) for m in (plain, fast)]
    collate = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    rows = sft_dataset(pages, "structured")
    steps = []
    for step in range(batches):
        batch = {k: v.to("cuda") for k, v in collate([rows[2 * step + i] for i in range(2)]).items()}
        losses = []
        for model, optimizer, kwargs in ((plain, optimizers[0], {}), (fast, optimizers[1], {"fused_lm_head": True})):
            optimizer.zero_grad()
            loss = model(**batch, **kwargs).loss
            loss.backward()
            losses.append(float(loss))
        # parameter by parameter: one flat fp32 copy of 3.75 B gradients would take 15 GB per model
        squared_difference = squared_reference = squared_fast = dot = 0.0
        for a, b in zip(plain.parameters(), fast.parameters()):
            if a.grad is not None:
                ga, gb = a.grad.float(), b.grad.float()
                squared_difference += float((gb - ga).square().sum())
                squared_reference += float(ga.square().sum())
                squared_fast += float(gb.square().sum())
                dot += float((ga * gb).sum())
        for optimizer in optimizers:
            optimizer.step()
        steps.append({"step": step, "tokens": int(batch["attention_mask"].sum()),
                      "pad": int((1 - batch["attention_mask"]).sum()), "loss_plain": losses[0], "loss_fast": losses[1],
                      "loss_rel_diff": abs(losses[1] - losses[0]) / abs(losses[0]),
                      "grad_rel_diff": (squared_difference / squared_reference) ** 0.5,
                      "grad_cosine": dot / (squared_reference * squared_fast) ** 0.5})
        print(json.dumps(steps[-1]), flush=True)
    del plain, fast, optimizers
    gc.collect()
    torch.cuda.empty_cache()
    return {"applied": applied, "steps": steps}


CONFIGS = {
    "baseline-full": {"path": "baseline", "method": "full"},
    "ours-full": {"path": "ours", "method": "full"},
    "ours-full-80gb": {"path": "ours", "method": "full", "budget": 75},  # trainer.memory_budget_gb=75
    "baseline-full+vision": {"path": "baseline", "method": "full", "train_vision": True},
    "ours-full+vision": {"path": "ours", "method": "full", "train_vision": True},
    "baseline-lora": {"path": "baseline", "method": "lora"},
    "ours-lora": {"path": "ours", "method": "lora"},
    "baseline-lora-7b": {"path": "baseline", "method": "lora", "shape": "7b"},
    "ours-lora-7b": {"path": "ours", "method": "lora", "shape": "7b"},
}


def parse_config(text: str, previous: dict | None = None) -> tuple[str, dict]:
    """NAME or NAME:key=value,key=value (performance fields such as compile=off or master_weights=optimizer,
    checkpointing=0/1, budget=GB) for exploring variants. plan=previous trains on the plan the row before chose
    (its token budget, gradient accumulation and recompute policy, set explicitly): the same batches, so its losses
    compare step by step."""
    name, _, overrides = text.partition(":")
    spec = copy.deepcopy(CONFIGS[name])
    for item in filter(None, overrides.split(",")):
        key, value = item.split("=")
        if key == "plan":
            plan = plan_of(previous, text)
            spec["accumulation"] = plan["accumulation"]
            spec.setdefault("performance", {}).update(plan["performance"])
        elif key == "checkpointing":
            spec["checkpointing"] = value == "1"
        elif key == "budget":
            spec["budget"] = float(value)
        elif key == "shape":
            spec["shape"] = value
        elif key == "lora_dropout":
            spec["lora_dropout"] = float(value)
        elif value in ("0", "1", "true", "false"):
            spec.setdefault("performance", {})[key] = value in ("1", "true")
        else:
            spec.setdefault("performance", {})[key] = int(value) if value.isdigit() else value
    return text, spec


def plan_of(row: dict | None, text: str) -> dict:
    """The spec entries that repeat `row`'s plan: token budget (or fixed batches), accumulation, recompute policy."""
    if row is None or "recompute" not in row or row.get("path") != "ours":
        raise SystemExit(f"{text}: plan=previous needs a row of ours before it")
    budget = row.get("token_budget")
    return {"accumulation": row.get("gradient_accumulation", 1),
            "performance": {"token_budget": str(budget) if budget else "off", "recompute": row["recompute"]["policy"]}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=4,
                        help="untimed steps first; compile recompiles for new batch shapes in the first few (2 until the fourth H200 run)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--check", action="store_true", help="first run the 3B plain-vs-fast equivalence check")
    parser.add_argument("--profile", nargs="*", default=[], help="configurations with a profiled step after the timed ones")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    args.work = tempfile.mkdtemp()

    import transformers
    import trl

    from dharma_train.models.loading import load_processor
    from dharma_train.models.tiny import tiny_model_dir

    work = Path(args.work)
    from dharma_train.models.varlen import varlen_parameters

    print("varlen_attn parameters:", varlen_parameters(), flush=True)
    processor = load_processor(str(tiny_model_dir(work / "cache")), max_pixels=1288 * 896)
    started = time.perf_counter()
    pages = make_pages(work / "pages", args.pages)
    tokens = [len(processor.tokenizer(p.answer.to_json())["input_ids"]) for p in pages]
    print(f"{len(pages)} pages in {time.perf_counter() - started:.0f}s; answer tokens {min(tokens)}-{max(tokens)}, "
          f"mean {sum(tokens) / len(tokens):.0f}", flush=True)
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "transformers": transformers.__version__,
              "trl": trl.__version__, "peft": __import__("peft").__version__, "liger_kernel": _version("liger_kernel"),
              "pages": len(pages), "batch": args.batch, "warmup_steps": args.warmup, "timed_steps": args.steps,
              "answer_tokens": [min(tokens), max(tokens)], "rows": []}
    if args.check:
        report["equivalence"] = check_equivalence(pages, processor)
    for text in args.configs:
        name, spec = parse_config(text, report["rows"][-1] if report["rows"] else None)
        report["rows"].append(run_config(name, spec, pages, processor, args))
        Path(args.out, "bench_training.json").write_text(json.dumps(report, indent=2))
    print_table(report)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package.replace("_", "-"))
    except PackageNotFoundError:
        return None


def print_table(report: dict) -> None:
    baselines = {(r["method"], r.get("shape", "3b"), bool(r.get("train_vision"))): r for r in report["rows"]
                 if r["path"] == "baseline" and "tokens_per_second" in r}
    print(f"\n{report['gpu']}, torch {report['torch']}, transformers {report['transformers']}, trl {report['trl']}, "
          f"peft {report['peft']}, liger-kernel {report['liger_kernel']}; batch {report['batch']} pages, "
          f"{report['timed_steps']} timed steps after {report['warmup_steps']} warm-up")
    print("| configuration | trained params | token budget x accumulation | recompute (predicted peak) | compile "
          "| master weights | useful tokens/s | MFU | peak memory | x baseline |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in report["rows"]:
        recompute = row.get("recompute", {})
        policy = recompute.get("policy", "")
        if "budget_gib" in recompute:
            policy += f" (auto: {recompute['predicted_peak_gib']} GiB predicted of {recompute['budget_gib']:.0f})"
        batches = f"{row['token_budget']} x {row.get('gradient_accumulation', 1)}" if row.get("token_budget") else ""
        compiled = row.get("applied", {}).get("compile", "")
        masters = row.get("applied", {}).get("master_weights", "")
        if "tokens_per_second" not in row:
            print(f"| {row['config']} | | {batches} | {policy} | {compiled} | {masters} | {row.get('error')} | | "
                  f"{row['peak_gib']:.1f} GiB | |")
            continue
        base = baselines.get((row["method"], row.get("shape", "3b"), bool(row.get("train_vision"))))
        ratio = f"{row['tokens_per_second'] / base['tokens_per_second']:.2f}x" if base else ""
        print(f"| {row['config']} | {row['trainable'] / 1e9:.2f}B | {batches} | {policy} | {compiled} | {masters} | "
              f"{row['tokens_per_second']:,.0f} | {100 * row['mfu']:.1f} % | {row['peak_gib']:.1f} GiB | {ratio} |")
    for row in report["rows"]:
        if "reason" in row.get("recompute", {}):
            print(f"{row['config']}: {row['recompute']['reason']}")
    print_loss_check(report["rows"])
    for row in report["rows"]:
        if "profile" in row:
            print(f"\nprofile of {row['config']} (one step, {row['profile']['gpu_ms']:.0f} ms GPU, "
                  f"{row['profile']['kernel_launches']} kernel launches): {row['profile']['groups_percent']}")
            print("\n".join(row["profile"]["top"]))


def variant(row: dict) -> str:
    """How a row of ours departs from the eager path with fp32 parameters under autocast ("" where it does not)."""
    applied = row.get("applied", {})
    return " and ".join(part for part, present in (
        ("compiled", applied.get("compile") == "on"),
        ("fp32 copies in the optimizer", applied.get("master_weights") == "optimizer")) if present)


def print_loss_check(rows: list[dict]) -> None:
    """Each compiled or master-weights row's losses against the eager row with fp32 parameters of the same method,
    shape and plan (same batches): issue 33 asks for the same losses to 3 digits over the first 10 steps."""
    def plan(row):
        return (row["method"], row.get("shape", "3b"), bool(row.get("train_vision")), row.get("token_budget"),
                row.get("gradient_accumulation"), row.get("recompute", {}).get("policy"))

    eager = {plan(r): r for r in rows if r["path"] == "ours" and r.get("losses") and not variant(r)}
    for row in rows:
        if row["path"] != "ours" or not variant(row) or not row.get("losses"):
            continue
        twin = eager.get(plan(row))
        if twin is None:
            print(f"losses, {row['config']} ({variant(row)}): {row['losses']}; no eager row with fp32 parameters and "
                  "the same plan (add one with plan=previous right after it)")
            continue
        steps = min(len(row["losses"]), len(twin["losses"]))
        worst = max(abs(a - b) / abs(b) for a, b in zip(row["losses"][:steps], twin["losses"][:steps]))
        print(f"losses over {steps} steps, {row['config']} ({variant(row)}) against {twin['config']} (eager): max "
              f"relative difference {worst:.1e} ({'equal' if worst < 5e-4 else 'NOT equal'} to 3 digits)\n"
              f"  {variant(row)}: {row['losses']}\n  eager: {twin['losses']}\n"
              f"  gradient norms, {variant(row)}: {row.get('grad_norms')}\n"
              f"  gradient norms, eager: {twin.get('grad_norms')}")


if __name__ == "__main__":
    main()
