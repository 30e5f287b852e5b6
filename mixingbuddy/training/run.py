"""The training entry point behind `train_sft.py`: arguments, model, data, trainer, and the exported result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import load_dataset
from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

from ..models.checkpoints import save_hub_folder
from ..models.components import MERT_V1_330M, QWEN2_7B_INSTRUCT, apply_lora, load_components
from ..models.tiny import build_tiny_model_and_processor
from .callbacks import AugmentationEpochCallback, ProjectorDropoutSchedule
from .collator import FlawedMixCollator
from .log_mel import fit_log_mel_statistics
from .trainer import MixingBuddySFTTrainer, unwrap_mixingbuddy


@dataclass
class MixingBuddyArguments:
    """What to build and where the audio comes from (the language model is `ModelConfig.model_name_or_path`)."""

    stems_dir: str = field(metadata={"help": "MUSDB18HQ-layout folder the data set was built from (mixes are rendered from it)."})
    stem_cache_dir: str | None = field(default=None, metadata={"help": "Where the 24 kHz stem cache lives (default: the builder's)."})
    tiny: bool = field(default=False, metadata={"help": "Train a tiny random model (CPU demo and tests) instead of MERT + Qwen2."})
    tiny_text_hidden_size: int = 128
    tiny_text_layers: int = 2
    audio_encoder: str = MERT_V1_330M
    audio_frontend: str = field(default="hubert", metadata={"help": "'hubert' (MERT, the paper) or 'log_mel' (light, CPU)."})
    audio_pooling: int = 1
    aux_loss: str | None = "norm"
    aux_loss_weight: float = 0.05
    projector_dropout: float = 0.3
    projector_dropout_after_plateau: float = 0.1
    augment: bool = True
    feature_statistics_clips: int = 256


def build_model(args: MixingBuddyArguments, model_args: ModelConfig, seed: int, gradient_checkpointing: bool):
    """(model, processor) as the arguments describe: the paper model from its components, or a tiny one; with
    `model_args.use_peft`, wrapped in LoRA."""
    config_kwargs = {
        "audio_frontend": args.audio_frontend,
        "audio_pooling": args.audio_pooling,
        "aux_loss": args.aux_loss,
        "aux_loss_weight": args.aux_loss_weight,
        "projector_dropout": args.projector_dropout,
        "freeze_audio_tower": args.audio_frontend == "hubert",
    }
    if args.tiny:
        model, processor = build_tiny_model_and_processor(
            seed=seed, text_hidden_size=args.tiny_text_hidden_size, text_layers=args.tiny_text_layers, **config_kwargs
        )
        return (apply_lora(model, model_args) if model_args.use_peft else model), processor
    return load_components(
        args.audio_encoder,
        model_args.model_name_or_path or QWEN2_7B_INSTRUCT,
        model_args,
        gradient_checkpointing=gradient_checkpointing,
        **config_kwargs,
    )


def export_final_model(trainer, processor, output_dir: Path, quantized: bool):
    """Hub-layout folder in `output_dir`: with LoRA, the adapter goes to `output_dir/adapter` and the merged model to
    `output_dir`; a 4-bit base is not merged (load the adapter onto the base model instead)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        model.save_pretrained(output_dir / "adapter")
        processor.save_pretrained(output_dir / "adapter")
        if quantized:
            return
        model = model.merge_and_unload()
    save_hub_folder(model, processor, output_dir, overwrite=True)


def main(
    script_args: ScriptArguments, training_args: SFTConfig, model_args: ModelConfig, mb_args: MixingBuddyArguments
) -> MixingBuddySFTTrainer:
    """Train as the parsed arguments say and export the result to `training_args.output_dir`."""
    training_args.remove_unused_columns = False
    training_args.dataset_kwargs = {"skip_prepare_dataset": True}
    model, processor = build_model(mb_args, model_args, training_args.seed, training_args.gradient_checkpointing)
    training_args.gradient_checkpointing = False  # already set up on the language model where it applies

    dataset = load_dataset(script_args.dataset_name, name=script_args.dataset_config)
    train_dataset = dataset[script_args.dataset_train_split]
    eval_dataset = dataset[script_args.dataset_test_split] if training_args.eval_strategy != "no" else None

    collator = FlawedMixCollator(
        processor, mb_args.stems_dir, cache_dir=mb_args.stem_cache_dir, augment=mb_args.augment, seed=training_args.seed
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
        ],
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    if trainer.is_world_process_zero():
        quantized = model_args.load_in_4bit and torch.cuda.is_available() and not mb_args.tiny
        export_final_model(trainer, processor, Path(training_args.output_dir), quantized)
    return trainer


def run(argv: list[str] | None = None) -> MixingBuddySFTTrainer:
    """Parse a command line (`sys.argv` when None), as `accelerate launch train_sft.py ...` does, and train."""
    parser = TrlParser((ScriptArguments, SFTConfig, ModelConfig, MixingBuddyArguments))
    return main(*parser.parse_args_and_config(argv))
