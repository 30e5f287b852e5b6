"""The training entry point behind `train_sft.py`: arguments, model, data, trainer, and the exported result."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import load_dataset
from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

from dataset_builder.provenance import check_audio

from ..files import check_location
from ..models.checkpoints import (
    is_small,
    quiet_progress,
    save_adapter_folder,
    save_hub_folder,
    write_adapter_record,
)
from ..models.components import MERT_V1_330M, QWEN2_7B_INSTRUCT, apply_lora, load_components
from ..models.tiny import build_tiny_model_and_processor
from .callbacks import AugmentationEpochCallback, ProjectorDropoutSchedule
from .collator import FlawedMixCollator
from .log_mel import fit_log_mel_statistics
from .trainer import MixingBuddySFTTrainer, unwrap_mixingbuddy


@dataclass
class MixingBuddyArguments:
    """What to build and where the audio comes from (the language model is `ModelConfig.model_name_or_path`)."""

    stems_dir: str | None = field(
        default=None,
        metadata={"help": "MUSDB18HQ-layout folder the mixes are rendered from (default: the one the data set records)."},
    )
    stem_cache_dir: str | None = field(default=None, metadata={"help": "Where the 24 kHz stem cache lives (default: the builder's)."})
    tiny: bool = field(default=False, metadata={"help": "Train a tiny random model (CPU demo and tests) instead of MERT + Qwen2."})
    tiny_text_hidden_size: int = 128
    tiny_text_layers: int = 2
    audio_encoder: str = MERT_V1_330M
    audio_frontend: str = field(default="hubert", metadata={"help": "'hubert' (MERT, the paper) or 'log_mel' (light, CPU)."})
    audio_pooling: int = 1
    mel_hop_length: int = field(default=320, metadata={"help": "Hop of the log-mel front-end (samples at 24 kHz)."})
    aux_loss: str | None = field(default="norm", metadata={"help": "'norm', 'label' or 'none'."})
    aux_loss_weight: float = 0.05
    projector_dropout: float = 0.3
    projector_dropout_after_plateau: float = 0.1
    augment: bool = True
    fresh_gains: bool = field(
        default=False,
        metadata={"help": "Draw a new gain within each row's category on every pass instead of the row's fixed gain."},
    )
    feature_statistics_clips: int = 256

    def __post_init__(self):
        if self.aux_loss in ("none", "None", ""):  # how a command line or YAML file says "no auxiliary loss"
            self.aux_loss = None


def build_model(
    args: MixingBuddyArguments, model_args: ModelConfig, seed: int, gradient_checkpointing: bool, evaluates: bool
):
    """(model, processor) as the arguments describe: the paper model from its components, or a tiny one; with
    `model_args.use_peft`, wrapped in LoRA. Quantization runs on the CPU too unless the training `evaluates` as it
    goes (see `load_components`)."""
    config_kwargs = {
        "audio_frontend": args.audio_frontend,
        "audio_pooling": args.audio_pooling,
        **({"mel_hop_length": args.mel_hop_length} if args.audio_frontend == "log_mel" else {}),
        "aux_loss": args.aux_loss,
        "aux_loss_weight": args.aux_loss_weight,
        "projector_dropout": args.projector_dropout,
        "freeze_audio_tower": args.audio_frontend == "hubert",
    }
    if args.tiny:
        model, processor = build_tiny_model_and_processor(
            seed=seed, text_hidden_size=args.tiny_text_hidden_size, text_layers=args.tiny_text_layers, **config_kwargs
        )
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return (apply_lora(model, model_args) if model_args.use_peft else model), processor
    return load_components(
        args.audio_encoder,
        model_args.model_name_or_path or QWEN2_7B_INSTRUCT,
        model_args,
        gradient_checkpointing=gradient_checkpointing,
        quantize_on_cpu=not evaluates,
        **config_kwargs,
    )


def export_final_model(trainer, processor, output_dir: Path):
    """What `load_model(output_dir)` loads in one call: the model in Hub layout after full fine-tuning; with LoRA the
    merged model, and the adapter in `output_dir/adapter`; with LoRA on a quantized base the adapter itself (with the
    record that rebuilds its base; `mixingbuddy export` merges it into a plain folder). Called on every process: with
    FSDP or DeepSpeed the weights are sharded, so the Trainer gathers them (all processes take part) and the adapter is
    not merged here (`mixingbuddy export` does it)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        if trainer.is_fsdp_enabled:  # checkpoints stay sharded; the final model is gathered whole
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(str(output_dir))
        if trainer.is_world_process_zero():
            processor.save_pretrained(output_dir)
            if hasattr(model, "merge_and_unload"):
                write_adapter_record(output_dir, model)
        return
    if not trainer.is_world_process_zero():
        return
    if not hasattr(model, "merge_and_unload"):
        save_hub_folder(model, processor, output_dir, overwrite=True)
    elif getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        save_adapter_folder(model, processor, output_dir, overwrite=True)
    else:
        save_adapter_folder(model, processor, output_dir / "adapter", overwrite=True)
        save_hub_folder(model.merge_and_unload(), processor, output_dir, overwrite=True)


def prepare_data(
    script_args: ScriptArguments, training_args: SFTConfig, model_args: ModelConfig, mb_args: MixingBuddyArguments
):
    """(data set, stems folder), checked before any model loads: the model options go together, the stems are the
    audio the data set was built from, the splits exist, the output folder is safe to write and a checkpoint to resume
    from is complete. A problem is a `ValueError` or `OSError` in one line."""
    check_model_options(training_args, model_args, mb_args)
    stems_dir = check_audio(script_args.dataset_name, mb_args.stems_dir)
    dataset = load_dataset(script_args.dataset_name, name=script_args.dataset_config)
    needed = [script_args.dataset_train_split]
    if training_args.eval_strategy != "no":
        needed.append(script_args.dataset_test_split)
    missing = [split for split in needed if split not in dataset]
    if missing:
        raise ValueError(
            f"Data set {script_args.dataset_name} has no {' or '.join(missing)} split (it has {', '.join(dataset)}); "
            "set --dataset_train_split / --dataset_test_split, or --eval_strategy no."
        )
    output_dir = check_location(training_args.output_dir, protected=[stems_dir])
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"Output folder {output_dir} is a file.")
    if training_args.resume_from_checkpoint:
        checkpoint = Path(training_args.resume_from_checkpoint)
        weights = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
        if not (checkpoint / "trainer_state.json").is_file() or not any((checkpoint / w).is_file() for w in weights):
            raise FileNotFoundError(
                f"Checkpoint {checkpoint} is missing or incomplete (no trainer_state.json or no weights); "
                "pass a complete checkpoint-N folder of the output folder."
            )
    return dataset, stems_dir


def check_model_options(training_args: SFTConfig, model_args: ModelConfig, mb_args: MixingBuddyArguments) -> None:
    """Refuse what cannot train: a quantized language model without LoRA (its weights cannot be updated), quantizing
    the tiny random model (it has no checkpoint to quantize), and a quantized model sharded by FSDP."""
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return
    if mb_args.tiny:
        raise ValueError("The tiny model is built in memory and cannot be quantized: drop load_in_4bit / load_in_8bit.")
    if not model_args.use_peft:
        raise ValueError("A quantized language model trains only through LoRA: set use_peft (as configs/paper.yaml).")
    if training_args.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        raise ValueError("FSDP cannot shard a bitsandbytes-quantized model here: train it with DDP or ZeRO-2.")


@contextlib.contextmanager
def flushed_denormals():
    """Flush float32 values below the normal range to zero while training (the CPU's default keeps them): some of the
    log-mel front-end's gradients fall there, and the CPU's convolution backward then runs about 10x slower (measured
    on the tiny model: 0.57 -> 0.28 s per step on one thread). GPUs are not affected."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def main(
    script_args: ScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    mb_args: MixingBuddyArguments,
    dataset,
    stems_dir: Path,
    callbacks=(),
) -> MixingBuddySFTTrainer:
    """Train on `dataset` (from `prepare_data`) as the parsed arguments say, with extra trainer `callbacks`, and export
    the result to `training_args.output_dir`."""
    training_args.remove_unused_columns = False
    training_args.dataset_kwargs = {"skip_prepare_dataset": True}
    evaluates = training_args.eval_strategy != "no"
    model, processor = build_model(
        mb_args, model_args, training_args.seed, training_args.activation_checkpointing, evaluates
    )
    # already set up on the language model where it applies
    training_args.activation_checkpointing = training_args.gradient_checkpointing = False

    train_dataset = dataset[script_args.dataset_train_split]
    eval_dataset = dataset[script_args.dataset_test_split] if training_args.eval_strategy != "no" else None
    collator = FlawedMixCollator(
        processor,
        stems_dir,
        cache_dir=mb_args.stem_cache_dir,
        augment=mb_args.augment,
        seed=training_args.seed,
        fresh_gains=mb_args.fresh_gains,
    )
    if mb_args.audio_frontend == "log_mel":
        fit_log_mel_statistics(unwrap_mixingbuddy(model), collator.eval_copy(), train_dataset, mb_args.feature_statistics_clips)

    trainer = MixingBuddySFTTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        eval_data_collator=collator.eval_copy(),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        callbacks=[
            AugmentationEpochCallback(collator),
            ProjectorDropoutSchedule(mb_args.projector_dropout, mb_args.projector_dropout_after_plateau),
            *callbacks,
        ],
    )
    with quiet_progress(is_small(model)), flushed_denormals():  # a tiny model's checkpoints save in a blink
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        export_final_model(trainer, processor, Path(training_args.output_dir))
    return trainer


def run(argv: list[str] | None = None, callbacks=()) -> MixingBuddySFTTrainer:
    """Parse a command line (`sys.argv` when None), as `accelerate launch train_sft.py ...` does, check the data, the
    stems and the folders, and train (with extra trainer `callbacks`). A user error is one line and exit code 2,
    before any model loads."""
    parser = TrlParser((ScriptArguments, SFTConfig, ModelConfig, MixingBuddyArguments))
    script_args, training_args, model_args, mb_args = parser.parse_args_and_config(argv)
    try:
        dataset, stems_dir = prepare_data(script_args, training_args, model_args, mb_args)
    except (ValueError, OSError) as err:
        print(f"train_sft.py: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return main(script_args, training_args, model_args, mb_args, dataset, stems_dir, callbacks)
