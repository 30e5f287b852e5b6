"""The paper's path on one GPU, with no download: a paper-shaped model with random weights (MERT-v1-330M and
Qwen2-7B-Instruct shapes, the 7B in NF4 with LoRA) and a synthetic corpus it makes itself, through every stage —
placement, QLoRA training at audio pooling 1 and 10, gradient checkpointing, save and load, the merged export, the
three decodings, and the critique of a four-minute song. Prints one JSON summary; exits with 1 when a check fails.

    .venv/bin/python bench/gpu_smoke.py            # on a CUDA machine: paper shapes (about 10 minutes on an H100)
    .venv/bin/python bench/gpu_smoke.py --tiny     # on the CPU: the same checks on a tiny model (tests/ run this)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from configuration_mixingbuddy import MERT_V1_330M_AUDIO_CONFIG, QWEN2_7B_TEXT_CONFIG
from dataset_builder import build_dataset
from dataset_builder.synth import synthesize_corpus
from mixingbuddy import config_file
from mixingbuddy.critique import critique_audio, open_audio
from mixingbuddy.evaluation import DECODINGS
from mixingbuddy.evaluation.generation import generate_advice
from mixingbuddy.models.checkpoints import load_model, save_adapter_folder
from mixingbuddy.models.components import load_components, local_device, paper_model_args
from mixingbuddy.models.export import export_model
from mixingbuddy.models.tiny import TINY_AUDIO_CONFIG, TINY_TEXT_CONFIG, build_tiny_tokenizer
from mixingbuddy.training.collator import FlawedMixCollator
from mixingbuddy.training.run import run



def write_components(root: Path, tiny: bool) -> tuple[Path, Path]:
    """Random-weight component folders in the real formats: MERT (HuBERT weights) and a Qwen2 chat model whose
    tokenizer is the project's offline one (the shapes, not the vocabulary, are what the smoke run measures)."""
    from transformers import AutoModelForCausalLM, HubertConfig, HubertModel, Qwen2Config, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    audio = HubertConfig(**(TINY_AUDIO_CONFIG if tiny else MERT_V1_330M_AUDIO_CONFIG))
    text = Qwen2Config(**(TINY_TEXT_CONFIG if tiny else QWEN2_7B_TEXT_CONFIG),
                       **({"vocab_size": len(tokenizer) + 8} if tiny else {}))
    with torch.device(local_device()):
        HubertModel(audio).save_pretrained(root / "mert")
        AutoModelForCausalLM.from_config(text, dtype=torch.float32 if tiny else torch.bfloat16).save_pretrained(root / "qwen")
    Wav2Vec2FeatureExtractor(sampling_rate=24000, do_normalize=True, return_attention_mask=True).save_pretrained(root / "mert")
    tokenizer.save_pretrained(root / "qwen")
    return root / "mert", root / "qwen"


def peak_memory_gb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


class StepWatch(TrainerCallback):
    """Times optimizer steps and records which parameters had a gradient at the first one."""

    def __init__(self):
        self.started, self.seconds, self.with_gradient, self.trainable = None, [], None, None

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.with_gradient is None:
            named = list(model.named_parameters())
            self.trainable = {n for n, p in named if p.requires_grad}
            self.with_gradient = {n for n, p in named if p.grad is not None and bool(p.grad.abs().sum() > 0)}

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self.started)


def placement(model) -> dict:
    """Where the parameters are, the dtype of each part, and the class of the LoRA wrapper on the language model."""
    base = model.base_model.model
    parts = {"audio_tower": base.model.audio_tower, "layer_weights": base.model.layer_weights,
             "projector": base.model.projector, "language_model": base.model.language_model, "lm_head": base.lm_head}
    devices = {str(p.device) for p in model.parameters()}
    q_proj = base.model.language_model.layers[0].self_attn.q_proj
    return {
        "devices": sorted(devices),
        "dtypes": {name: sorted({str(p.dtype) for p in part.parameters()}) for name, part in parts.items()},
        "lora_wrapper": f"{type(q_proj).__module__}.{type(q_proj).__name__}",
        "ok": devices == {str(local_device())} and type(q_proj).__name__ == "Linear4bit",
    }


def train(mert: Path, qwen: Path, data: Path, cache: Path, out: Path, pooling: int, steps: int, tiny: bool) -> dict:
    """`steps` optimizer steps of QLoRA at batch 2 × accumulation 2 with gradient checkpointing, as train_sft.py runs
    them."""
    watch = StepWatch()
    reset_peak()
    trainer = run([
        "--config", str(config_file("paper.yaml")), "--dataset_name", str(data),
        "--audio_encoder", str(mert), "--model_name_or_path", str(qwen), "--audio_pooling", str(pooling),
        "--stem_cache_dir", str(cache),
        "--max_steps", str(steps), "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
        "--activation_checkpointing", "true", "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps",
        "1", "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0",
        *(["--use_cpu", "true", "--bf16", "false", "--dtype", "float32"] if tiny else []),
    ], callbacks=[watch])
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    losses = [entry["loss"] for entry in logs]
    expected = {n for n in watch.trainable if "lora_" in n or "modules_to_save" in n}
    unexpected = {n for n in watch.with_gradient if n not in expected or "audio_tower" in n}
    return {
        "audio_tokens_per_sample": trainer.model.base_model.model.config.audio_tokens_per_clip,
        "lm_loss_step0": logs[0]["lm_loss"], "aux_loss_step0": logs[0].get("aux_loss"),
        "losses_finite": all(map(math.isfinite, losses)),
        "parameters_with_gradient": len(watch.with_gradient), "gradients_where_not_expected": sorted(unexpected)[:5],
        "seconds_per_step": round(float(np.median(watch.seconds)), 3), "peak_memory_gb": peak_memory_gb(),
        "placement": placement(trainer.model),
        "ok": all(map(math.isfinite, losses)) and not unexpected and any("lora_B" in n for n in watch.with_gradient),
        "trainer": trainer,
    }


def checkpointing_matches(mert: Path, qwen: Path, batch, pooling: int, tiny: bool) -> dict:
    """Loss and gradients on one fixed batch, dropout off, with gradient checkpointing and without."""
    model_args = paper_model_args(lora_dropout=0.0, **({"dtype": "float32"} if tiny else {}))
    model, _ = load_components(
        mert, qwen, model_args, gradient_checkpointing=True, projector_dropout=0.0, audio_pooling=pooling
    )
    model.train()
    results = []
    for checkpointing in (True, False):
        if not checkpointing:
            model.activation_checkpointing_disable()
        model.zero_grad()
        loss = model(**batch.to(model.device), use_cache=False).loss
        loss.backward()
        grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.item(), grads))
    (loss_on, grads_on), (loss_off, grads_off) = results
    worst = max((grads_on[n] - grads_off[n]).abs().max().item() for n in grads_on)
    return {"loss_on": loss_on, "loss_off": loss_off, "max_gradient_difference": worst,
            "ok": grads_on.keys() == grads_off.keys() and abs(loss_on - loss_off) < 1e-3 and worst < 1e-2}


def logits_of(model, rows, collator) -> torch.Tensor:
    with torch.no_grad():
        return model(**collator(rows, labels=False).to(model.device)).logits.float().cpu()


def round_trips(trainer, processor, rows, root: Path, collator: FlawedMixCollator) -> dict:
    """The trained adapter saved and loaded, and exported merged: logits against the model at the end of training."""
    model = trainer.model.eval()
    expected = logits_of(model, rows, collator)
    save_adapter_folder(model, processor, root / "adapter")
    adapter, _ = load_model(str(root / "adapter"))
    adapter_difference = logits_of(adapter, rows, collator) - expected
    del adapter
    export_model(root / "adapter", root / "merged", dtype=torch.bfloat16, device=str(local_device()))
    merged, _ = load_model(str(root / "merged"))
    merged_difference = logits_of(merged, rows, collator) - expected
    del merged
    return {"adapter_max_logit_difference": adapter_difference.abs().max().item(),
            "merged_bf16_max_logit_difference": merged_difference.abs().max().item(),
            "ok": adapter_difference.abs().max().item() < 1e-3 and merged_difference.abs().max().item() < 0.5}


def decoding_speed(model, rows, collator: FlawedMixCollator) -> dict:
    """Two batches of 16 rows with each decoding: examples per second and peak memory."""
    results = {}
    for decoding in DECODINGS:
        reset_peak()
        started = time.perf_counter()
        answers = [a for i in (0, 16) for a in generate_advice(model, collator, rows[i : i + 16], decoding)]
        results[decoding] = {"examples_per_second": round(len(answers) / (time.perf_counter() - started), 2),
                             "peak_memory_gb": peak_memory_gb(), "answers": len(answers)}
    return {**results, "ok": all(r["answers"] == 32 for r in results.values())}


def critique_speed(model_dir: Path, song: Path) -> dict:
    """The critique of a song by the trained (NF4 + LoRA) model, loaded once, at batch 1 and batch 24."""
    started = time.perf_counter()
    model, processor = load_model(str(model_dir))
    results = {"load_seconds": round(time.perf_counter() - started, 2)}
    audio = open_audio(song)
    for batch_size in (1, 24):
        reset_peak()
        started = time.perf_counter()
        report = critique_audio(audio, "vocals", model, processor, batch_size=batch_size)
        results[f"batch_{batch_size}"] = {"seconds": round(time.perf_counter() - started, 2),
                                          "windows": len(report["windows"]), "peak_memory_gb": peak_memory_gb()}
    return {**results, "ok": results["batch_1"]["windows"] == results["batch_24"]["windows"] > 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (what the test suite runs)")
    parser.add_argument("--work-dir", default=None, help="where to write the components and corpus (default: temp)")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per training (default: 10)")
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        parser.error("paper shapes need a CUDA GPU; pass --tiny to run the checks on the CPU")
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        mert, qwen = write_components(root / "components", args.tiny)
        stems = synthesize_corpus(root / "corpus", songs=4, seconds=60, seed=0, progress=False)
        build_dataset(stems, root / "dataset", cache_dir=root / "cache")
        song_corpus = synthesize_corpus(root / "song", songs=1, seconds=40 if args.tiny else 240, seed=1, progress=False)
        song = next(song_corpus.rglob("mixture.wav"))
        summary = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                   "shapes": "tiny" if args.tiny else "paper", "setup_seconds": round(time.perf_counter() - started, 1)}

        from datasets import load_dataset

        rows = load_dataset(str(root / "dataset"), split="test").select(range(32))
        rows = [rows[i] for i in range(len(rows))]
        for pooling in (1, 10):
            result = train(mert, qwen, root / "dataset", root / "cache", root / f"run_{pooling}", pooling, args.steps,
                           args.tiny)
            trainer = result.pop("trainer")
            summary[f"training_pooling_{pooling}"] = result
        processor = trainer.processing_class
        collator = FlawedMixCollator(processor, stems, cache_dir=root / "cache")
        summary["round_trips"] = round_trips(trainer, processor, rows[:4], root, collator)
        summary["decoding"] = decoding_speed(trainer.model.eval(), rows, collator)
        del trainer
        batch = collator(rows[:2])
        summary["checkpointing"] = checkpointing_matches(mert, qwen, batch, 10, args.tiny)
        summary["critique"] = critique_speed(root / "adapter", song)
        summary["seconds"] = round(time.perf_counter() - started, 1)
    checks = [value["ok"] for value in summary.values() if isinstance(value, dict) and "ok" in value]
    summary["ok"] = all(checks) and all(v["placement"]["ok"] for k, v in summary.items() if k.startswith("training"))
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
