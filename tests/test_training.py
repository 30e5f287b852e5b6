"""Training with MixingBuddySFTTrainer: the loss falls, accumulation equals one large batch, checkpoints reload
identically, a resumed run continues the same data order, and two data-parallel processes match one."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import load_dataset
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from trl import SFTConfig

from helpers import ROW_FORMS, rows_without_other

from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS
from mixingbuddy.models.tiny import build_tiny_model_and_processor
from mixingbuddy.training.callbacks import ProjectorDropoutSchedule
from mixingbuddy.training.collator import FlawedMixCollator
from mixingbuddy.training.run import flushed_denormals, run
from mixingbuddy.training.trainer import MixingBuddySFTTrainer

REPO = Path(__file__).resolve().parents[1]


def training_args(tmp_path, **overrides) -> SFTConfig:
    defaults = dict(
        output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, bf16=False, activation_checkpointing=False,
        remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True}, logging_steps=1,
        save_strategy="no", eval_strategy="no", seed=0, max_grad_norm=0.0, weight_decay=0.0,
        lr_scheduler_type="constant", disable_tqdm=True,
    )
    return SFTConfig(**{**defaults, **overrides})


def tiny_trainer(tmp_path, synthetic_data, rows, aux_loss="label", **overrides):
    stems, _, cache = synthetic_data
    model, processor = build_tiny_model_and_processor(
        seed=0, audio_frontend="log_mel", freeze_audio_tower=False, audio_pooling=24, aux_loss=aux_loss,
        projector_dropout=0.0,
    )
    collator = FlawedMixCollator(processor, stems, cache_dir=cache)
    return MixingBuddySFTTrainer(
        model=model, args=training_args(tmp_path, **overrides), data_collator=collator, train_dataset=rows,
        processing_class=processor,
    )


@pytest.fixture(scope="module")
def rows(synthetic_data):
    return load_dataset(str(synthetic_data[1]), split="train")


@pytest.mark.parametrize("form", ROW_FORMS)
def test_the_collator_takes_rows_in_every_form(tmp_path, synthetic_data, rows, form):
    few = rows_without_other(rows.select(range(0, 60, 13)))
    collator = tiny_trainer(tmp_path, synthetic_data, few).data_collator
    expected = collator([few[i] for i in range(len(few))])
    batch = collator([ROW_FORMS[form](few, i) for i in range(len(few))])
    assert batch.keys() == expected.keys() == {"input_ids", "attention_mask", "labels", "input_values", "advice_labels"}
    tolerance = 1e-5 if form == "torch" else 0.0  # the torch format rounds gain_db to float32
    for key in expected:
        torch.testing.assert_close(batch[key], expected[key], rtol=tolerance, atol=tolerance)


def test_fresh_gains_redraw_the_gain_within_the_category_each_epoch(synthetic_data, rows):
    """With `fresh_gains`, a flawed row sounds at a new gain of its category on every pass (the same for the same
    seed and epoch); a balanced row and the evaluation copy render the row as built."""
    stems, _, cache = synthetic_data
    _, processor = build_tiny_model_and_processor(audio_frontend="log_mel", audio_pooling=24)
    collator = FlawedMixCollator(processor, stems, cache_dir=cache, fresh_gains=True, seed=3)
    flawed = next(r for r in rows if r["error_category"] == "very_loud")
    balanced = next(r for r in rows if r["error_category"] == "no_error")
    plain = collator.eval_copy()

    def gain_heard(row):  # the target's gain that explains the rendered mix, found by least squares
        chunk = collator.cache.chunk(row["track"], row["start_sec"], row["end_sec"])
        target = chunk[STEMS.index(row["target_stem"])]
        rest = chunk.sum(0) - target
        return 20 * np.log10(float(np.dot(collator.render(row) - rest, target) / np.dot(target, target)))

    heard = []
    for epoch in range(4):
        collator.epoch = epoch
        heard.append(gain_heard(flawed))
        np.testing.assert_array_equal(collator.render(balanced), plain.render(balanced))
    assert all(6 - 1e-3 <= g <= 12 + 1e-3 for g in heard) and len({round(g, 3) for g in heard}) == 4
    collator.epoch = 2
    assert gain_heard(flawed) == pytest.approx(heard[2], abs=1e-6)
    np.testing.assert_allclose(plain.render(flawed), collator.cache.render(flawed))


def test_a_few_steps_on_a_fixed_batch_lower_the_loss(tmp_path, synthetic_data, rows):
    batch = rows.select(range(8))
    trainer = tiny_trainer(tmp_path, synthetic_data, batch, per_device_train_batch_size=8, max_steps=12,
                           learning_rate=3e-3, optim="adamw_torch")
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert {"lm_loss", "aux_loss"} <= set(logs[0])
    assert logs[-1]["loss"] < 0.6 * logs[0]["loss"]
    assert logs[-1]["lm_loss"] < logs[0]["lm_loss"] and logs[-1]["aux_loss"] < logs[0]["aux_loss"]


@pytest.mark.parametrize("aux_loss", ["label", "norm"])
def test_gradient_accumulation_equals_one_large_batch(tmp_path, synthetic_data, rows, aux_loss):
    """One SGD step at lr 1 moves every parameter by minus its gradient: compare 8 × 1 with 2 × 4."""
    batch = rows.select(range(8))
    results = []
    for size, steps in ((8, 1), (2, 4)):
        trainer = tiny_trainer(tmp_path / f"{size}", synthetic_data, batch, aux_loss=aux_loss, optim="sgd",
                               learning_rate=1.0, max_steps=1, per_device_train_batch_size=size,
                               gradient_accumulation_steps=steps)
        trainer.train()
        results.append({n: p.detach().clone() for n, p in trainer.model.named_parameters()})
    start, _ = build_tiny_model_and_processor(seed=0, audio_frontend="log_mel", freeze_audio_tower=False,
                                              audio_pooling=24, aux_loss=aux_loss, projector_dropout=0.0)
    moved = 0
    for name, initial in start.named_parameters():
        torch.testing.assert_close(results[1][name], results[0][name], atol=2e-6, rtol=1e-4, msg=name)
        moved += not torch.equal(results[0][name], initial)
    assert moved > 10  # the step did change the model


def test_projector_dropout_is_lowered_once_when_eval_loss_stops_improving(tiny):
    model, _ = tiny
    schedule = ProjectorDropoutSchedule(0.3, 0.1)
    schedule.on_train_begin(None, None, None, model=model)
    rates = lambda: {m.p for m in model.model.projector.modules() if isinstance(m, torch.nn.Dropout)}  # noqa: E731
    assert rates() == {0.3}
    for loss, expected in ((2.0, 0.3), (1.5, 0.3), (1.6, 0.1), (1.2, 0.1)):
        schedule.on_evaluate(None, None, None, model=model, metrics={"eval_loss": loss})
        assert rates() == {expected}
    assert schedule.state()["attributes"] == {"best_eval_loss": 1.2, "lowered": True}
    model.set_projector_dropout(model.config.projector_dropout)


def run_train_sft(synthetic_data, output_dir, *extra):
    stems, dataset, cache = synthetic_data
    argv = ["--config", str(REPO / "configs" / "tiny.yaml"), "--dataset_name", str(dataset), "--stems_dir",
            str(stems), "--stem_cache_dir", str(cache), "--output_dir", str(output_dir), "--feature_statistics_clips",
            "16", "--disable_tqdm", "true", "--eval_strategy", "no", *extra]
    return run(argv)


def weights(folder) -> dict:
    return load_file(Path(folder) / "model.safetensors")


def test_checkpoints_reload_identically_and_resume_continues_the_data_order(tmp_path, synthetic_data):
    common = ("--max_steps", "6", "--save_steps", "3", "--save_total_limit", "2", "--per_device_train_batch_size", "4")
    trainer = run_train_sft(synthetic_data, tmp_path / "full", *common)
    final = tmp_path / "full"
    reloaded = AutoModelForCausalLM.from_pretrained(final, trust_remote_code=True).eval()
    model = trainer.model.eval()
    inputs = trainer.eval_data_collator([trainer.train_dataset[i] for i in range(3)], labels=False)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    assert (final / "checkpoint-3" / "model.safetensors").exists()
    assert (final / "checkpoint-3" / "processor_config.json").exists()

    run_train_sft(synthetic_data, tmp_path / "resumed", *common,
                  "--resume_from_checkpoint", str(final / "checkpoint-3"))
    resumed, full = weights(tmp_path / "resumed"), weights(final)
    assert resumed.keys() == full.keys()
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_two_data_parallel_processes_match_one_process_with_the_same_global_batch(tmp_path, synthetic_data, rows):
    """A train split of exactly one global batch (8 rows), so each step sees the same rows whatever the sampler's
    order: 2 processes × 4 rows must give the model that 1 process × 8 rows gives (DDP on gloo, CPU)."""
    stems, _, cache = synthetic_data
    dataset = tmp_path / "eight_rows"
    rows.select(range(0, 240, 30)).to_parquet(dataset / "data" / "train-00000-of-00001.parquet")
    common = ["--config", str(REPO / "configs" / "tiny.yaml"), "--dataset_name", str(dataset), "--stems_dir",
              str(stems), "--stem_cache_dir", str(cache), "--feature_statistics_clips", "16", "--max_steps", "2",
              "--eval_strategy", "no", "--save_strategy", "no", "--augment", "false", "--projector_dropout", "0",
              "--disable_tqdm", "true"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launchers = {
        2: ["--config_file", str(REPO / "configs" / "accelerate" / "ddp.yaml"), "--num_processes", "2"],
        1: ["--num_processes", "1", "--cpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
    }
    for processes, batch in ((2, 4), (1, 8)):
        command = [sys.executable, "-m", "accelerate.commands.launch", *launchers[processes],
                   str(REPO / "train_sft.py"), *common, "--per_device_train_batch_size", str(batch),
                   "--output_dir", str(tmp_path / f"p{processes}")]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    two, one = weights(tmp_path / "p2"), weights(tmp_path / "p1")
    start, _ = build_tiny_model_and_processor(seed=0, audio_frontend="log_mel", text_hidden_size=128)
    changed = 0
    for name, tensor in one.items():
        torch.testing.assert_close(two[name], tensor, atol=1e-4, rtol=1e-4, msg=name)  # Adam: 2 steps of 2e-3
        changed += name in start.state_dict() and not torch.equal(tensor, start.state_dict()[name])
    assert changed > 10


def test_the_paper_config_parses_into_the_paper_recipe():
    from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

    from mixingbuddy.training.lora import paper_model_args
    from mixingbuddy.training.run import MixingBuddyArguments

    parser = TrlParser((ScriptArguments, SFTConfig, ModelConfig, MixingBuddyArguments))
    argv = ["--config", str(REPO / "configs" / "paper.yaml"), "--use_cpu", "true"]  # bf16 is refused without a GPU
    script, training, model_args, mb = parser.parse_args_and_config(argv)
    quantization = (model_args.load_in_4bit, model_args.bnb_4bit_quant_type, model_args.use_bnb_nested_quant)
    assert quantization == (True, "nf4", True) and model_args.dtype == "bfloat16"
    assert (model_args.use_peft, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout) == (True, 16, 32, 0.1)
    projections = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert set(model_args.lora_target_modules) == projections
    assert model_args.model_name_or_path == "models/mixingbuddy-base" and mb.audio_encoder is None
    assert mb.architecture() == {} and mb.training_overrides() == {"projector_dropout": 0.3, "aux_loss_weight": 0.05}
    batch = (training.learning_rate, training.per_device_train_batch_size, training.gradient_accumulation_steps)
    assert batch == (1e-4, 2, 8) and script.dataset_name == "data/mixingbuddy-gain"
    assert paper_model_args() == model_args


def test_training_flushes_denormals_and_restores_the_default():
    """Values below float32's normal range become zero inside `flushed_denormals` (they slow the CPU's convolution
    backward about tenfold) and survive again after it."""
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    assert (tiny * 1.0).item() != 0.0
    with flushed_denormals():
        assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() != 0.0


@pytest.mark.parametrize("lora", [False, True])
def test_a_model_folder_trains_through_model_name_or_path(tmp_path, synthetic_data, lora):
    """A folder in Hub layout (here the tiny checkpoint) trains as train_sft.py's --model_name_or_path: in full, or
    with LoRA through SFTTrainer's peft_config, whose adapter names the folder as its base."""
    import json

    from mixingbuddy.models.checkpoints import load_model
    from mixingbuddy.models.tiny import save_tiny_checkpoint

    _, dataset, cache = synthetic_data
    base, out = save_tiny_checkpoint(tmp_path / "tiny"), tmp_path / "out"
    argv = ["--config", str(REPO / "configs" / "tiny.yaml"), "--tiny", "false", "--model_name_or_path", str(base),
            "--audio_frontend", "hubert", "--audio_pooling", "25", "--aux_loss", "norm", "--audio_inputs", "mix",
            "--clip_levels", "false", "--dataset_name", str(dataset),
            "--stem_cache_dir", str(cache), "--max_steps", "2", "--per_device_train_batch_size", "2",
            "--eval_strategy", "no", "--save_strategy", "no", "--output_dir", str(out), "--disable_tqdm", "true"]
    if lora:
        argv += ["--use_peft", "true", "--lora_target_modules", "q_proj", "v_proj"]
    trainer = run(argv)
    assert trainer.model.config.audio_pooling == 25 and (out / "config.json").is_file()
    if lora:
        adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
        assert adapter["base_model_name_or_path"] == str(base.resolve())
        peft_model, _ = load_model(str(out / "adapter"), device="cpu")
        assert type(peft_model).__name__ == "PeftModelForCausalLM"
    model, _ = load_model(str(out), device="cpu")
    assert type(model).__name__ == "MixingBuddyForConditionalGeneration"
