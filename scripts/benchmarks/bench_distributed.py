"""Full fine-tuning on 1 GPU versus N GPUs with FSDP2, same global batch: tokens/s per GPU, scaling efficiency
(per-GPU rate on N over the 1-GPU rate), peak memory per GPU, and the stage's time outside training (loading,
gathering the sharded weights to rank 0 and saving them as a plain model).

Runs the real `SFTStage` (TRL SFTTrainer, accelerate FSDP2) on a random-init model of the real shape (3B: the
shape of scripts/benchmarks/bench_generation.py; 7B: Qwen2.5-VL-7B's), saved to local disk first so the stage loads it like
any artifact. Pages: synthetic 896 x 1288 px (1,472 image tokens). Launch one configuration per command:

    torchrun --nproc_per_node 1 -m scripts.benchmarks.bench_distributed --shape 3b --strategy single --tag 3b_1gpu
    torchrun --nproc_per_node 2 -m scripts.benchmarks.bench_distributed --shape 3b --strategy fsdp2 --tag 3b_2gpu_fsdp2
    torchrun --nproc_per_node 2 -m scripts.benchmarks.bench_distributed --shape 7b --strategy fsdp2 --tag 7b_2gpu_fsdp2

(scripts/benchmarks/bench_distributed_gpus.sh runs all three and writes the table). `--shape tiny --device cpu
--strategy ddp` is a CPU smoke test of this script under `torchrun --nproc_per_node 2`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

SHAPES_7B = {  # Qwen2.5-VL-7B-Instruct's config.json
    "text": {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
             "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False},
    "vision_out": 3584,
}


def model_7b(tokenizer):
    """Qwen2.5-VL-7B's shape, random init, bf16 on the GPU (the stage reloads it in fp32 for full fine-tuning)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    config = Qwen2_5_VLConfig(
        text_config={**SHAPES_7B["text"], "max_position_embeddings": 128000,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"], "bos_token_id": None},
        vision_config={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                       "out_hidden_size": SHAPES_7B["vision_out"], "fullatt_block_indexes": [7, 15, 23, 31],
                       "window_size": 112, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device("cuda"):
        return Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16,
                                                                attn_implementation="sdpa")


def prepare(work: Path, shape: str, pages: int):
    """Rank 0 builds the model folder and the pages once per work folder (later launches reuse them); returns
    (model folder, page set, tokens per sample). The 3B folder is laid out like the Hub's
    (dharma_train/models/hub_layout.py), so the stock processor and chat template build every sample."""
    from PIL import Image

    from dharma_train.data.pages import PageSet
    from dharma_train.data.prompts import prompt_messages, target_text
    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.models.loading import load_processor
    from dharma_train.models.tiny import tiny_model_dir

    if shape == "tiny":
        folder, size = tiny_model_dir(work / "cache"), (224, 308)
    else:
        folder, size = work / "model", (896, 1288)
        if not (folder / "config.json").is_file():
            if shape == "3b":
                from dharma_train.models.hub_layout import write_checkpoint

                write_checkpoint(folder, "3b", device="cuda")
            else:
                processor = load_processor(str(tiny_model_dir(work / "cache")), max_pixels=1288 * 896)
                model = model_7b(processor.tokenizer)
                model.save_pretrained(folder)
                processor.save_pretrained(folder)
                del model
            torch.cuda.empty_cache()
    page_folder = work / "pages"
    if (page_folder / "pages.jsonl").is_file():
        from dharma_train.data.pages import load_pages

        page_set = load_pages(page_folder)
    else:
        page_set = generate_pages(page_folder, pages, seed=0, width=size[0], height=size[1],
                                  workers=min(8, os.cpu_count() or 1))
    assert isinstance(page_set, PageSet)
    processor = load_processor(str(folder), max_pixels=1288 * 896)
    tokens = []
    for page in page_set:  # exactly what the collator feeds the model: image tokens expanded, prompt and answer
        messages = prompt_messages("structured") + [
            {"role": "assistant", "content": [{"type": "text", "text": target_text(page.answer, "structured")}]}]
        text = processor.tokenizer.apply_chat_template(messages, tokenize=False)
        tokens.append(processor(images=[Image.open(page.image).convert("RGB")], text=[text],
                                return_tensors="pt")["input_ids"].shape[1])
    return str(folder), page_set, sum(tokens) / len(tokens)


def update_agreement(initial: str, trained: str, reference: str) -> dict:
    """How the weight update of this run (trained - initial) agrees with the reference run's (reference - initial):
    cosine and relative L2 difference over every tensor; plain safetensors reads, so the saved folder is checked
    to be a plain transformers model too."""
    from safetensors import safe_open

    def tensors(folder):
        files = sorted(Path(folder).glob("*.safetensors"))
        handles = [safe_open(str(f), framework="pt", device="cuda" if torch.cuda.is_available() else "cpu")
                   for f in files]
        return {key: handle for handle in handles for key in handle.keys()}

    start, ours, theirs = tensors(initial), tensors(trained), tensors(reference)
    if set(ours) != set(theirs):
        raise RuntimeError(f"{trained} and {reference} hold different tensors: "
                           f"{sorted(set(ours) ^ set(theirs))[:5]}")
    dot = ours_sq = theirs_sq = diff_sq = 0.0
    for key in sorted(ours):
        if key not in start:
            continue
        base = start[key].get_tensor(key).float()
        a = ours[key].get_tensor(key).float() - base
        b = theirs[key].get_tensor(key).float() - base
        dot += float((a * b).sum())
        ours_sq += float((a * a).sum())
        theirs_sq += float((b * b).sum())
        diff_sq += float(((a - b) ** 2).sum())
    return {"update_cosine": dot / max((ours_sq * theirs_sq) ** 0.5, 1e-30),
            "update_relative_difference": (diff_sq / max(theirs_sq, 1e-30)) ** 0.5}


def capture_log_history() -> list:
    """Keep each trained stage's full `trainer.state.log_history` (the stage's metrics keep only the loss curve)."""
    from dharma_train.training import checkpoints

    histories, train = [], checkpoints.train_resumably

    def train_and_keep(trainer, *args, **kwargs):
        metrics = train(trainer, *args, **kwargs)
        histories.append([{k: v for k, v in entry.items() if isinstance(v, (int, float))}
                          for entry in trainer.state.log_history])
        return metrics

    checkpoints.train_resumably = train_and_keep  # the stages import it at call time
    return histories


def run_stage(kind: str, args, trainer, model_dir: str, pages, work: Path):
    """One short full fine-tuning stage (SFT, or DPO on loop-shaped synthetic pairs) through the real stage code;
    returns (result, training seconds, peak GiB on this process)."""
    from dharma_train.artifact import ModelArtifact
    from dharma_train.models.config import ModelConfig
    from dharma_train.stage import StageContext
    from dharma_train.stages.dpo import DPOStage, DPOStageConfig
    from dharma_train.stages.sft import SFTStage, SFTStageConfig
    from dharma_train.training.config import OptimizationConfig

    on_gpu = args.device == "cuda"
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    context = StageContext(trainer=trainer, model=ModelConfig(max_pixels=1288 * 896), run_name=args.tag)
    if kind == "sft":
        stage = SFTStage("sft", SFTStageConfig(task="structured", optimization=OptimizationConfig(
            method="full", freeze_vision=False, learning_rate=args.learning_rate, max_steps=args.steps,
            batch_size=args.global_batch, warmup=0, save="merged")))
    else:
        stage = DPOStage("dpo", DPOStageConfig(task="structured", pairs="synthetic", optimization=OptimizationConfig(
            method="full", learning_rate=args.learning_rate / 10, max_steps=args.steps,
            batch_size=args.global_batch, warmup=0, save="merged")))
    result = stage.run(ModelArtifact(path=model_dir), pages, work / args.tag / kind, context)
    peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else 0.0
    return result, result.metrics["train_runtime"], peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=["tiny", "3b", "7b"], default="3b")
    parser.add_argument("--strategy", choices=["single", "ddp", "fsdp2", "zero3"], default="fsdp2")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--pages", type=int, default=96)
    parser.add_argument("--stages", nargs="+", choices=["sft", "dpo"], default=["sft"],
                        help="dpo trains on the sft stage's output, so it needs sft before it")
    parser.add_argument("--learning-rate", type=float, default=1e-5, help="SFT's; DPO uses a tenth of it")
    parser.add_argument("--work", help="a folder kept across launches: the model and pages are built once")
    parser.add_argument("--reference", help="another launch's tag in --work: compare losses and the SFT update")
    parser.add_argument("--keep", action="store_true", help="keep this launch's saved models in --work")
    parser.add_argument("--dpo-from", help="another launch's tag in --work: DPO starts from that launch's saved SFT "
                        "model (so two engines' DPO stages start from the same weights)")
    parser.add_argument("--perf", nargs="*", default=[], metavar="KEY=VALUE",
                        help="trainer.performance fields for this launch, e.g. padding_free=false fused_kernels=false")
    parser.add_argument("--no-recompute", action="store_true", help="no activation recomputation (default: every layer)")
    parser.add_argument("--tag", default="run")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()

    from dharma_train import distributed
    from dharma_train.training.config import TrainerConfig
    from dharma_train.training.hardware import HardwareConfig

    on_gpu = args.device == "cuda"
    from dharma_train.training.performance.config import PerformanceConfig

    performance = PerformanceConfig(**{key: {"true": True, "false": False}.get(value, value)
                                       for key, value in (item.split("=", 1) for item in args.perf)})
    trainer = TrainerConfig(device=args.device, precision="bf16" if on_gpu else "fp32",
                            gradient_checkpointing=on_gpu and not args.no_recompute, logging_steps=1,
                            checkpoint_every=0, hardware=HardwareConfig(strategy=args.strategy),
                            performance=performance)
    trainer.check_hardware()
    distributed.start(cpu=not on_gpu)
    world = distributed.world_size()
    trainer.hardware.check(args.device, world, distributed.launched(), {"bench": args.global_batch})
    work = Path(args.work) if args.work else Path(distributed.broadcast(tempfile.mkdtemp(prefix="bench_distributed_")))
    try:
        model_dir, pages, tokens_per_sample = distributed.on_main(prepare, work, args.shape, args.pages)
        report = {
            "tag": args.tag, "shape": args.shape, "strategy": args.strategy, "gpus": world,
            "device": torch.cuda.get_device_name() if on_gpu else "cpu", "torch": torch.__version__,
            "transformers": __import__("transformers").__version__, "trl": __import__("trl").__version__,
            "accelerate": __import__("accelerate").__version__,
            "deepspeed": __import__("deepspeed").__version__ if args.strategy == "zero3" else None,
            "global_batch": args.global_batch, "per_gpu_batch": args.global_batch // world, "steps": args.steps,
            "tokens_per_sample": tokens_per_sample, "perf": args.perf, "recompute": not args.no_recompute,
            "dpo_from": args.dpo_from, "stages": {},
        }
        history = capture_log_history()
        source = model_dir
        for kind in args.stages:
            if kind == "dpo" and args.dpo_from:
                source = json.loads(Path(args.out, f"bench_distributed_{args.dpo_from}.json").read_text())[
                    "stages"]["sft"]["saved"]
            started = time.perf_counter()
            result, train_seconds, peak = run_stage(kind, args, trainer, source, pages, work)
            wall = time.perf_counter() - started
            tokens = tokens_per_sample * args.global_batch * args.steps * (2 if kind == "dpo" else 1)
            report["stages"][kind] = {
                "train_seconds": train_seconds, "tokens_per_second": tokens / train_seconds,
                "tokens_per_second_per_gpu": tokens / train_seconds / world,
                "peak_memory_gib_per_gpu": distributed.gather([peak]), "load_gather_save_seconds": wall - train_seconds,
                "train_loss": result.metrics.get("train_loss"), "loss_curve": result.metrics.get("loss_curve"),
                "recompute": result.metrics.get("recompute"), "saved": result.artifact.path,
                "log_history": history.pop(),  # TRL's logged metrics per step (DPO: rewards, log-probs, margins)
            }
            source = result.artifact.path
        if distributed.is_main():
            from transformers import AutoModelForImageTextToText

            for kind, stage in report["stages"].items():  # every saved model loads with plain transformers
                model = AutoModelForImageTextToText.from_pretrained(stage["saved"], dtype=torch.bfloat16)
                stage["loads_with_transformers"] = type(model).__name__
                del model
            if args.reference:
                reference = json.loads(Path(args.out, f"bench_distributed_{args.reference}.json").read_text())
                for kind, stage in report["stages"].items():
                    theirs = reference["stages"].get(kind)
                    if not theirs:
                        continue
                    pairs = list(zip(stage["loss_curve"], theirs["loss_curve"]))
                    stage["loss_max_relative_difference"] = max(
                        abs(a[1] - b[1]) / max(abs(b[1]), 1e-12) for a, b in pairs) if pairs else None
                    if kind == "sft":
                        stage.update(update_agreement(model_dir, stage["saved"], theirs["saved"]))
            Path(args.out, f"bench_distributed_{args.tag}.json").write_text(json.dumps(report, indent=2))
            print(json.dumps(report, indent=2))
            if not args.keep:
                shutil.rmtree(work / args.tag, ignore_errors=True)
    finally:  # a temporary work folder holds the model (7.5 GB at 3B): removed also when a stage raises
        if not args.work and distributed.is_main():
            shutil.rmtree(work, ignore_errors=True)
    distributed.barrier()


if __name__ == "__main__":
    main()
