"""Full fine-tuning on 1 GPU versus N GPUs with FSDP2, same global batch: tokens/s per GPU, scaling efficiency
(per-GPU rate on N over the 1-GPU rate), peak memory per GPU, and the stage's time outside training (loading,
gathering the sharded weights to rank 0 and saving them as a plain model).

Runs the real `SFTStage` (TRL SFTTrainer, accelerate FSDP2) on a random-init model of the real shape (3B: the
shape of scripts/bench_generation.py; 7B: Qwen2.5-VL-7B's), saved to local disk first so the stage loads it like
any artifact. Pages: synthetic 896 x 1288 px (1,472 image tokens). Launch one configuration per command:

    torchrun --nproc_per_node 1 scripts/bench_distributed.py --shape 3b --strategy single --tag 3b_1gpu
    torchrun --nproc_per_node 2 scripts/bench_distributed.py --shape 3b --strategy fsdp2 --tag 3b_2gpu_fsdp2
    torchrun --nproc_per_node 2 scripts/bench_distributed.py --shape 7b --strategy fsdp2 --tag 7b_2gpu_fsdp2

(scripts/device_bench_distributed.sh runs all three and writes the table). `--shape tiny --device cpu
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
    """Rank 0 builds the model folder and the pages; returns (model folder, page set, tokens per sample)."""
    from PIL import Image

    from dharma_train.data.prompts import prompt_messages, target_text
    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.models.loading import load_processor
    from dharma_train.models.tiny import tiny_model_dir

    tiny = tiny_model_dir(work / "cache")
    if shape == "tiny":
        folder, size = tiny, (224, 308)
    else:
        from bench_generation import model_3b

        processor = load_processor(str(tiny), max_pixels=1288 * 896)
        model = model_3b(processor.tokenizer) if shape == "3b" else model_7b(processor.tokenizer)
        folder, size = work / "model", (896, 1288)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        del model
        torch.cuda.empty_cache()
    page_set = generate_pages(work / "pages", pages, seed=0, width=size[0], height=size[1])
    processor = load_processor(str(folder), max_pixels=1288 * 896)
    tokens = []
    for page in page_set:  # exactly what the collator feeds the model: image tokens expanded, prompt and answer
        messages = prompt_messages("structured") + [
            {"role": "assistant", "content": [{"type": "text", "text": target_text(page.answer, "structured")}]}]
        text = processor.tokenizer.apply_chat_template(messages, tokenize=False)
        tokens.append(processor(images=[Image.open(page.image).convert("RGB")], text=[text],
                                return_tensors="pt")["input_ids"].shape[1])
    return str(folder), page_set, sum(tokens) / len(tokens)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=["tiny", "3b", "7b"], default="3b")
    parser.add_argument("--strategy", choices=["single", "ddp", "fsdp2", "zero3"], default="fsdp2")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--pages", type=int, default=96)
    parser.add_argument("--tag", default="run")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()

    from dharma_train import distributed
    from dharma_train.artifact import ModelArtifact
    from dharma_train.models.config import ModelConfig
    from dharma_train.stage import StageContext
    from dharma_train.stages.sft import SFTStage, SFTStageConfig
    from dharma_train.training.config import OptimizationConfig, TrainerConfig
    from dharma_train.training.hardware import HardwareConfig

    on_gpu = args.device == "cuda"
    trainer = TrainerConfig(device=args.device, precision="bf16" if on_gpu else "fp32", gradient_checkpointing=on_gpu,
                            logging_steps=1, hardware=HardwareConfig(strategy=args.strategy))
    trainer.check_hardware()
    distributed.start(cpu=not on_gpu)
    world = distributed.world_size()
    trainer.hardware.check(args.device, world, distributed.launched(), {"bench": args.global_batch})
    work = Path(distributed.broadcast(tempfile.mkdtemp(prefix="bench_distributed_")))
    model_dir, pages, tokens_per_sample = distributed.on_main(prepare, work, args.shape, args.pages)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    config = SFTStageConfig(task="structured", optimization=OptimizationConfig(
        method="full", freeze_vision=False, learning_rate=1e-5, max_steps=args.steps, batch_size=args.global_batch,
        warmup=0, save="merged"))
    context = StageContext(trainer=trainer, model=ModelConfig(max_pixels=1288 * 896), run_name=args.tag)
    started = time.perf_counter()
    result = SFTStage("sft", config).run(ModelArtifact(path=model_dir), pages, work / "sft", context)
    wall = time.perf_counter() - started
    train_seconds = result.metrics["train_runtime"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else 0.0
    peaks = distributed.gather([peak])
    tokens = tokens_per_sample * args.global_batch * args.steps
    report = {
        "tag": args.tag, "shape": args.shape, "strategy": args.strategy, "gpus": world,
        "device": torch.cuda.get_device_name() if on_gpu else "cpu", "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "trl": __import__("trl").__version__,
        "accelerate": __import__("accelerate").__version__,
        "global_batch": args.global_batch, "per_gpu_batch": args.global_batch // world, "steps": args.steps,
        "tokens_per_sample": tokens_per_sample, "train_seconds": train_seconds,
        "tokens_per_second": tokens / train_seconds, "tokens_per_second_per_gpu": tokens / train_seconds / world,
        "peak_memory_gib_per_gpu": peaks, "load_gather_save_seconds": wall - train_seconds,
        "train_loss": result.metrics.get("train_loss"), "saved": result.artifact.path,
    }
    if distributed.is_main():
        from transformers import AutoConfig

        AutoConfig.from_pretrained(result.artifact.path)  # the saved model is a plain transformers folder
        Path(args.out, f"bench_distributed_{args.tag}.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
