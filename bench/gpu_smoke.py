"""The paper's path with no download, on the standard loading path: random-weight components in the real formats
(MERT-v1-330M as HuBERT, Qwen2-7B-Instruct) → `mixingbuddy convert` → QLoRA training through `train_sft.py`'s
code (NF4 `from_pretrained`, `SFTTrainer(peft_config=...)`) → the adapter saved and loaded → the merged export →
the three decodings → the critique of a song. Prints one JSON summary with each stage's time and peak memory;
exits with 1 when a check fails.

    .venv/bin/python bench/gpu_smoke.py                              # CUDA: paper shapes, full depth
    .venv/bin/python bench/gpu_smoke.py --paper-widths --layers 2    # any machine: the paper's widths, 2 layers each
    .venv/bin/python bench/gpu_smoke.py --tiny                       # CPU: tiny shapes (the test suite runs this)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM, TrainerCallback

from dataset_builder import build_dataset
from dataset_builder.synth import synthesize_corpus
from mixingbuddy import config_file
from mixingbuddy.critique import critique_audio, open_audio
from mixingbuddy.evaluation import DECODINGS
from mixingbuddy.evaluation.generation import generate_advice
from mixingbuddy.hub.configuration_mixingbuddy import MERT_V1_330M_AUDIO_CONFIG, QWEN2_7B_TEXT_CONFIG
from mixingbuddy.models.checkpoints import load_model, nf4_config, save_adapter_folder
from mixingbuddy.models.convert import convert
from mixingbuddy.models.devices import local_device
from mixingbuddy.models.export import export_model
from mixingbuddy.models.tiny import TINY_AUDIO_CONFIG, TINY_TEXT_CONFIG, build_tiny_tokenizer
from mixingbuddy.training.collator import FlawedMixCollator
from mixingbuddy.training.lora import lora_config, paper_model_args
from mixingbuddy.training.run import run

ON_CUDA = torch.cuda.is_available()


class Stages:
    """Wall time and memory of each stage: the process's resident memory when it starts and its peak during it (VmRSS,
    VmHWM reset per stage through /proc/self/clear_refs; both count memory-mapped weight files) and, on CUDA, the
    peak of allocated GPU memory."""

    def __init__(self):
        self.report = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        if ON_CUDA:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        gc.collect()
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        rss_before, started = resident_gb("VmRSS"), time.perf_counter()
        yield
        if ON_CUDA:
            torch.cuda.synchronize()
        self.report[name] = {"seconds": round(time.perf_counter() - started, 1), "rss_before_gb": rss_before,
                             "peak_rss_gb": resident_gb("VmHWM"),
                             **({"peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)} if ON_CUDA
                                else {})}


def resident_gb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS: now; VmHWM: the peak) in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 2**20, 2)
    return None


def component_configs(shapes: str, layers: int | None) -> tuple[dict, dict]:
    """(HuBERT config, Qwen2 config) for `shapes`: "tiny", or "paper" (MERT-v1-330M, Qwen2-7B-Instruct), with
    `layers` layers each when given."""
    if shapes == "tiny":
        return dict(TINY_AUDIO_CONFIG), dict(TINY_TEXT_CONFIG)
    audio, text = dict(MERT_V1_330M_AUDIO_CONFIG), dict(QWEN2_7B_TEXT_CONFIG)
    if layers is not None:
        audio["num_hidden_layers"] = text["num_hidden_layers"] = layers
    return audio, text


def write_components(root: Path, shapes: str, layers: int | None) -> tuple[Path, Path]:
    """Random-weight component folders in the real formats: MERT (HuBERT weights, float32) and a Qwen2 chat model
    (bfloat16 at paper shapes, as Qwen2-7B-Instruct ships) whose tokenizer is the project's offline one (the shapes,
    not the vocabulary, are what the smoke run measures)."""
    from transformers import HubertConfig, HubertModel, Qwen2Config, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    audio, text = component_configs(shapes, layers)
    if shapes == "tiny":
        text["vocab_size"] = len(tokenizer) + 8
    with torch.device(local_device()):
        HubertModel(HubertConfig(**audio)).save_pretrained(root / "mert")
        AutoModelForCausalLM.from_config(
            Qwen2Config(**text), dtype=torch.float32 if shapes == "tiny" else torch.bfloat16
        ).save_pretrained(root / "qwen")
    feature_extractor = Wav2Vec2FeatureExtractor(sampling_rate=24000, do_normalize=True, return_attention_mask=True)
    feature_extractor.save_pretrained(root / "mert")
    tokenizer.save_pretrained(root / "qwen")
    return root / "mert", root / "qwen"


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
        if ON_CUDA:
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


def train(base: Path, data: Path, cache: Path, out: Path, steps: int, on_cpu: bool) -> dict:
    """`steps` optimizer steps of QLoRA at batch 2 × accumulation 2 with gradient checkpointing, as train_sft.py runs
    them with configs/paper.yaml."""
    watch = StepWatch()
    trainer = run([
        "--config", str(config_file("paper.yaml")), "--dataset_name", str(data), "--model_name_or_path", str(base),
        "--stem_cache_dir", str(cache),
        "--max_steps", str(steps), "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
        "--activation_checkpointing", "true", "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps",
        "1", "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0",
        *(["--use_cpu", "true", "--bf16", "false", "--dtype", "float32"] if on_cpu else []),
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
        "seconds_per_step": round(float(np.median(watch.seconds)), 3),
        "placement": placement(trainer.model),
        "ok": all(map(math.isfinite, losses)) and not unexpected and any("lora_B" in n for n in watch.with_gradient),
        "trainer": trainer,
    }


def checkpointing_matches(base: Path, batch, on_cpu: bool) -> dict:
    """Loss and gradients on one fixed batch, dropout off, with gradient checkpointing and without."""
    from peft import prepare_model_for_kbit_training

    compute = torch.float32 if on_cpu else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(
        base, trust_remote_code=True, dtype=compute, quantization_config=nf4_config(compute), projector_dropout=0.0,
        device_map={"": local_device()},
    )
    model = prepare_model_for_kbit_training(model, True, gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, lora_config(paper_model_args(lora_dropout=0.0), model)).train()
    results = []
    for checkpointing in (True, False):
        if not checkpointing:
            model.base_model.model.gradient_checkpointing_disable()
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


def run_in_dtype(model, dtype: torch.dtype):
    """`model` with its adapter (LoRA and the modules trained in full) in `dtype`, as TRL trained it."""
    for name, param in model.named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            param.data = param.data.to(dtype)
    return model


def save_and_load(trainer, processor, rows, root: Path, collator: FlawedMixCollator) -> dict:
    """The trained adapter saved and loaded in NF4 as trained: logits against the model at the end of training."""
    model = trainer.model.eval()
    expected = logits_of(model, rows, collator)
    save_adapter_folder(model, processor, root / "adapter")
    adapter, _ = load_model(str(root / "adapter"), load_in_4bit=True)
    trained_dtype = next(p.dtype for n, p in model.named_parameters() if "lora_" in n)
    difference = (logits_of(run_in_dtype(adapter, trained_dtype), rows, collator) - expected).abs().max().item()
    return {"adapter_max_logit_difference": difference, "ok": difference < 1e-3}


def merged_export(root: Path, rows, collator: FlawedMixCollator) -> dict:
    """The merged bfloat16 export against the adapter on its full-precision base (what the export merges into)."""
    adapter, _ = load_model(str(root / "adapter"))
    expected = logits_of(adapter, rows, collator)
    del adapter
    export_model(root / "adapter", root / "merged", dtype=torch.bfloat16, device=str(local_device()))
    merged, _ = load_model(str(root / "merged"))
    difference = (logits_of(merged, rows, collator) - expected).abs().max().item()
    return {"merged_bf16_max_logit_difference": difference, "ok": difference < 0.5}


def decoding_speed(model, rows, collator: FlawedMixCollator, batch_size: int) -> dict:
    """Two batches of `batch_size` rows with each decoding: examples per second."""
    results = {}
    for decoding in DECODINGS:
        started = time.perf_counter()
        answers = [answer for start in (0, batch_size)
                   for answer in generate_advice(model, collator, rows[start : start + batch_size], decoding)]
        results[decoding] = {"examples_per_second": round(len(answers) / (time.perf_counter() - started), 2),
                             "answers": len(answers)}
    return {**results, "ok": all(r["answers"] == 2 * batch_size for r in results.values())}


def critique_speed(model_dir: Path, song: Path, batch_sizes: tuple[int, ...]) -> dict:
    """The critique of a song by the trained (NF4 + LoRA) model, loaded once, at each batch size."""
    model, processor = load_model(str(model_dir), load_in_4bit=True)
    audio = open_audio(song)
    results = {}
    for batch_size in batch_sizes:
        started = time.perf_counter()
        report = critique_audio(audio, "vocals", model, processor, batch_size=batch_size)
        results[f"batch_{batch_size}"] = {"seconds": round(time.perf_counter() - started, 2),
                                          "windows": len(report["windows"])}
    windows = {result["windows"] for result in results.values()}
    return {**results, "ok": len(windows) == 1 and windows.pop() > 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shapes = parser.add_mutually_exclusive_group()
    shapes.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (what the test suite runs)")
    shapes.add_argument("--paper-widths", action="store_true",
                        help="the paper's widths with --layers layers each: runs on the CPU too")
    parser.add_argument("--layers", type=int, default=2, help="layers of each component with --paper-widths")
    parser.add_argument("--work-dir", default=None, help="where to write the components and corpus (default: temp)")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per training (default: 10)")
    args = parser.parse_args(argv)
    if not (args.tiny or args.paper_widths or ON_CUDA):
        parser.error("full-depth paper shapes need a CUDA GPU; pass --paper-widths --layers 2 or --tiny on the CPU")
    shape = "tiny" if args.tiny else "paper"
    layers = args.layers if args.paper_widths else None
    on_cpu = not ON_CUDA
    # on the CPU the paper's widths train and decode at pooling 10 (75 audio tokens) and in small batches
    poolings = (10,) if args.paper_widths and on_cpu else (1, 10)
    batch_size = 2 if args.paper_widths and on_cpu else 16
    stages = Stages()
    summary = {"device": torch.cuda.get_device_name() if ON_CUDA else "cpu",
               "shapes": f"paper widths, {layers} layers" if layers else shape}
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        root = Path(tmp)
        with stages("components_and_data"):
            mert, qwen = write_components(root / "components", shape, layers)
            stems = synthesize_corpus(root / "corpus", songs=4, seconds=60, seed=0, progress=False)
            build_dataset(stems, root / "dataset", cache_dir=root / "cache")
            song_seconds = 240 if ON_CUDA and not args.paper_widths else 40
            song_corpus = synthesize_corpus(root / "song", songs=1, seconds=song_seconds, seed=1, progress=False)
            song = next(song_corpus.rglob("mixture.wav"))
        from datasets import load_dataset

        rows = load_dataset(str(root / "dataset"), split="test").select(range(2 * batch_size))
        rows = [rows[i] for i in range(len(rows))]
        for pooling in poolings:
            with stages(f"convert_pooling_{pooling}"):
                convert(mert, qwen, root / f"base_{pooling}", audio_pooling=pooling)
            with stages(f"train_pooling_{pooling}"):
                result = train(root / f"base_{pooling}", root / "dataset", root / "cache", root / f"run_{pooling}",
                               args.steps, on_cpu)
            trainer = result.pop("trainer")
            summary[f"training_pooling_{pooling}"] = result
            if pooling != poolings[-1]:
                shutil.rmtree(root / f"base_{pooling}")  # at paper shapes each folder is 16 GB of disk
        shutil.rmtree(root / "components")
        processor = trainer.processing_class
        collator = FlawedMixCollator(processor, stems, cache_dir=root / "cache")
        with stages("save_and_load"):
            summary["save_and_load"] = save_and_load(trainer, processor, rows[:2], root, collator)
        with stages("decodings"):
            summary["decoding"] = decoding_speed(trainer.model.eval(), rows, collator, batch_size)
        del trainer
        with stages("merged_export"):
            summary["merged_export"] = merged_export(root, rows[:2], collator)
        with stages("checkpointing"):
            summary["checkpointing"] = checkpointing_matches(root / f"base_{poolings[-1]}", collator(rows[:2]), on_cpu)
        with stages("critique"):
            summary["critique"] = critique_speed(root / "adapter", song, (1, 24) if ON_CUDA else (1, 4))
    summary["stages"] = stages.report
    summary["seconds"] = round(sum(stage["seconds"] for stage in stages.report.values()), 1)
    checks = [value["ok"] for value in summary.values() if isinstance(value, dict) and "ok" in value]
    summary["ok"] = all(checks) and all(v["placement"]["ok"] for k, v in summary.items() if k.startswith("training"))
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
