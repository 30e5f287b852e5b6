"""Fine-tune MixingBuddy on the flawed-mix data set with TRL.

    accelerate launch train_sft.py --config configs/paper.yaml      # MERT + Qwen2-7B-Instruct, QLoRA, on CUDA
    accelerate launch train_sft.py --config configs/tiny.yaml       # tiny log-mel model, on CPU
    accelerate launch train_sft.py --config configs/tiny.yaml --max_steps 50 --output_dir runs/try

Any field below, or of TRL's `ScriptArguments` / `SFTConfig`, can be set in the YAML file or on the command line.
When training ends, `output_dir` holds the final model in Hub layout (LoRA merged), loadable with
`AutoModelForCausalLM.from_pretrained(output_dir, trust_remote_code=True)`; with LoRA, the adapter alone (LoRA,
projector, layer weights, advice head) is in `output_dir/adapter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import load_dataset
from trl import ScriptArguments, SFTConfig, TrlParser

from mixingbuddy_tiny import build_tiny_model_and_processor
from modeling_mixingbuddy import MixingBuddyForConditionalGeneration, apply_lora, save_hub_folder
from training_mixingbuddy import (
    AugmentationEpochCallback,
    FlawedMixCollator,
    MixingBuddySFTTrainer,
    ProjectorDropoutSchedule,
    fit_log_mel_statistics,
    unwrap_mixingbuddy,
)


@dataclass
class MixingBuddyArguments:
    """What to build and where the audio comes from."""

    stems_dir: str = field(metadata={"help": "MUSDB18HQ-layout folder the data set was built from (mixes are rendered from it)."})
    stem_cache_dir: str | None = field(default=None, metadata={"help": "Where the 24 kHz stem cache lives (default: the builder's)."})
    tiny: bool = field(default=False, metadata={"help": "Train a tiny random model (CPU demo and tests) instead of MERT + Qwen2."})
    tiny_text_hidden_size: int = 128
    tiny_text_layers: int = 2
    audio_encoder: str = "m-a-p/MERT-v1-330M"
    language_model: str = "Qwen/Qwen2-7B-Instruct"
    quantization: str | None = field(default="nf4", metadata={"help": "'nf4' (CUDA only) or None."})
    use_lora: bool = True
    audio_frontend: str = field(default="hubert", metadata={"help": "'hubert' (MERT, the paper) or 'log_mel' (light, CPU)."})
    audio_pooling: int = 1
    aux_loss: str | None = "norm"
    aux_loss_weight: float = 0.05
    projector_dropout: float = 0.3
    projector_dropout_after_plateau: float = 0.1
    augment: bool = True
    feature_statistics_clips: int = 256


def build_model(args: MixingBuddyArguments, seed: int, gradient_checkpointing: bool):
    """(model, processor) as the arguments describe: the paper model from its components, or a tiny one."""
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
        return (apply_lora(model) if args.use_lora else model), processor
    from processing_mixingbuddy import MixingBuddyProcessor

    model = MixingBuddyForConditionalGeneration.from_pretrained_components(
        args.audio_encoder,
        args.language_model,
        quantization=args.quantization,
        lora=args.use_lora,
        gradient_checkpointing=gradient_checkpointing,
        **config_kwargs,
    )
    processor = MixingBuddyProcessor.from_pretrained_components(args.audio_encoder, args.language_model, args.audio_pooling)
    return model, processor


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


def main(script_args: ScriptArguments, training_args: SFTConfig, mb_args: MixingBuddyArguments):
    training_args.remove_unused_columns = False
    training_args.dataset_kwargs = {"skip_prepare_dataset": True}
    model, processor = build_model(mb_args, training_args.seed, training_args.gradient_checkpointing)
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
        quantized = mb_args.quantization == "nf4" and torch.cuda.is_available() and not mb_args.tiny
        export_final_model(trainer, processor, Path(training_args.output_dir), quantized)
    return trainer


def run(argv: list[str] | None = None):
    """Parse a command line (`sys.argv` when None), as `accelerate launch train_sft.py ...` does, and train."""
    parser = TrlParser((ScriptArguments, SFTConfig, MixingBuddyArguments))
    return main(*parser.parse_args_and_config(argv))


if __name__ == "__main__":
    run()
