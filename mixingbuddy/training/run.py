"""The training entry point behind `train_sft.py`: arguments, model, data, trainer, and the exported result."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import load_dataset
from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

from dataset_builder.provenance import check_audio

from ..files import MARKER, check_location, error_summary, read_marker, remove_dead_temporaries, write_marker
from ..hub.configuration_mixingbuddy import MixingBuddyConfig
from ..models.checkpoints import is_small, quiet_progress, save_adapter_folder, save_hub_folder
from ..models.devices import compute_dtype, cpu_dtype_decision, local_device
from ..models.tiny import build_tiny_model_and_processor
from .callbacks import AugmentationEpochCallback, ProjectorDropoutSchedule
from .collator import FlawedMixCollator
from .lora import lora_config
from .log_mel import fit_log_mel_statistics
from .trainer import MixingBuddySFTTrainer


# The config fields fixed when a model is made: a model folder's own, a different value is refused
ARCHITECTURE_FIELDS = ("audio_frontend", "audio_pooling", "mel_hop_length", "aux_loss", "audio_inputs", "clip_levels")
logger = logging.getLogger(__name__)


@dataclass
class MixingBuddyArguments:
    """Where the audio comes from, and the MixingBuddy settings of the model (`ModelConfig.model_name_or_path`: a folder
    `mixingbuddy convert` or `tiny-checkpoint` wrote, a Hub id of one, or with `tiny` a tiny model built in memory).

    The architecture (`audio_frontend`, `audio_pooling`, `mel_hop_length`, `aux_loss`, `audio_inputs`,
    `clip_levels`) is the model folder's: unset, it is taken from there, and a different value is refused (convert again). `aux_loss_weight` and
    `projector_dropout` only change how the model trains.
    """

    stems_dir: str | None = field(
        default=None,
        metadata={"help": "MUSDB18HQ-layout folder the mixes are rendered from (default: the one the data set records)."},
    )
    stem_cache_dir: str | None = field(default=None, metadata={"help": "Where the 24 kHz stem cache lives (default: the builder's)."})
    tiny: bool = field(default=False, metadata={"help": "Train a tiny random model built in memory (CPU demo and tests)."})
    tiny_text_hidden_size: int = 128
    tiny_text_layers: int = 2
    audio_encoder: str | None = field(
        default=None, metadata={"help": "Retired: run `mixingbuddy convert` and pass its folder as --model_name_or_path."}
    )
    audio_frontend: str | None = field(default=None, metadata={"help": "'hubert' (MERT, the paper) or 'log_mel' (light, CPU)."})
    audio_pooling: int | None = None
    mel_hop_length: int | None = field(default=None, metadata={"help": "Hop of the log-mel front-end (samples at 24 kHz)."})
    aux_loss: str | None = field(default=None, metadata={"help": "'norm', 'label' or 'none'."})
    audio_inputs: str | None = field(
        default=None,
        metadata={"help": "The clips the model hears: 'mix' (the paper), 'mix+anchor' or 'stems' (each stem, mix)."},
    )
    clip_levels: bool | None = field(
        default=None,
        metadata={"help": "With several clips, give each clip's level relative to the mix to its tokens."},
    )
    aux_loss_weight: float | None = None
    projector_dropout: float = 0.3
    projector_dropout_after_plateau: float = 0.1
    augment: bool = True
    fresh_gains: bool = field(
        default=False,
        metadata={"help": "Draw a new gain within each row's category on every pass instead of the row's fixed gain."},
    )
    other_spread_db: float = field(
        default=0.0,
        metadata={"help": "Move the 'other' stem by a gain drawn within ±this many dB per example and pass (never a "
                          "target nor an anchor: the accompaniment's level is not what the advice is about)."},
    )
    stem_spread_db: float = field(
        default=0.0,
        metadata={"help": "Move every stem by its own gain drawn within ±this many dB per example and pass, before the "
                          "flaw and with the advice unchanged: songs are balanced within that much of each other."},
    )
    feature_statistics_clips: int = 256
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": f"Replace an earlier training run in output_dir (only a folder whose {MARKER} says training)."},
    )

    def architecture(self) -> dict:
        """The architecture fields that are set, as `MixingBuddyConfig` takes them ("none" is no auxiliary loss)."""
        fields = {name: getattr(self, name) for name in ARCHITECTURE_FIELDS if getattr(self, name) is not None}
        if fields.get("aux_loss") in ("none", "None", ""):
            fields["aux_loss"] = None
        return fields

    def training_overrides(self) -> dict:
        """Config fields that only change how the model trains."""
        overrides = {"projector_dropout": self.projector_dropout}
        if self.aux_loss_weight is not None:
            overrides["aux_loss_weight"] = self.aux_loss_weight
        return overrides


def build_model(args: MixingBuddyArguments, model_args: ModelConfig, seed: int, gradient_checkpointing: bool,
                evaluates: bool):
    """(model, processor) as the arguments describe: the model folder or Hub id `model_args.model_name_or_path`
    loaded with `from_pretrained` — its language model quantized as `model_args` says (TRL's
    `get_quantization_config`, each process on its own GPU) and prepared for k-bit training — or a tiny model built in
    memory. Quantization runs on the CPU too unless the training `evaluates` as it goes: bitsandbytes cannot train
    after an inference pass there, so the language model then loads in full precision and a line says so."""
    if args.tiny:
        architecture = args.architecture()
        model, processor = build_tiny_model_and_processor(
            seed=seed, text_hidden_size=args.tiny_text_hidden_size, text_layers=args.tiny_text_layers,
            freeze_audio_tower=architecture.get("audio_frontend", "hubert") == "hubert",
            **architecture, **args.training_overrides(),
        )
    else:
        model, processor = load_for_training(model_args, args.training_overrides(), evaluates, gradient_checkpointing)
    if gradient_checkpointing and not getattr(model, "is_loaded_in_4bit", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, processor


def load_for_training(model_args: ModelConfig, overrides: dict, evaluates: bool, gradient_checkpointing: bool):
    """(model, processor) of `model_args.model_name_or_path` with the config `overrides`, for `build_model`: in
    `model_args.dtype` on a GPU and float32 on the CPU, the language model quantized as `model_args` says."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoProcessor
    from trl import get_quantization_config

    device = local_device()
    requested = getattr(torch, model_args.dtype) if model_args.dtype not in (None, "auto") else torch.float32
    dtype = requested if device.type == "cuda" else torch.float32  # the CPU trains in float32
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None and device.type == "cpu" and evaluates:
        logger.warning(
            "Loading the language model in full precision, not quantized: on the CPU, bitsandbytes cannot train after "
            "an evaluation pass (set eval_strategy to 'no' to train quantized)."
        )
        quantization_config = None
    kwargs = {"trust_remote_code": True, "dtype": dtype, **overrides}
    if quantization_config is not None:
        quantization_config.bnb_4bit_compute_dtype = dtype
        # each process's own GPU, as TRL's get_kbit_device_map placed it (TRL 1.x leaves it to the caller)
        kwargs.update(quantization_config=quantization_config, device_map={"": device} if device.type == "cuda" else None)
    reference = absolute_if_local(model_args.model_name_or_path)  # what the adapter will name as its base
    with quiet_progress(False):
        model = AutoModelForCausalLM.from_pretrained(reference, **kwargs)
    if quantization_config is not None:
        prepare_model_for_kbit_training(
            model, gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    return model, AutoProcessor.from_pretrained(reference, trust_remote_code=True)


def absolute_if_local(reference: str) -> str:
    path = Path(reference).expanduser()
    return str(path.resolve()) if path.exists() else reference


def export_final_model(trainer, processor, output_dir: Path):
    """What `load_model(output_dir)` loads in one call: the model in Hub layout after full fine-tuning; with LoRA the
    merged model, and the adapter in `output_dir/adapter`; with LoRA on a quantized base the adapter itself, which
    names its base (`mixingbuddy export` merges it into a plain folder). Called on every process: with FSDP or
    DeepSpeed the weights are sharded, so the Trainer gathers them (all processes take part) and the adapter is not
    merged here (`mixingbuddy export` does it)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        if trainer.is_fsdp_enabled:  # checkpoints stay sharded; the final model is gathered whole
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(str(output_dir))
        if trainer.is_world_process_zero():
            processor.save_pretrained(output_dir)
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
    """(data set, stems folder, whether an earlier run in the output folder is replaced), checked before any model
    loads and before anything is written: the model options go together, the batch sizes are positive, the stems are
    the audio the data set was built from, the output folder is safe to write, the splits exist and a checkpoint to
    resume from is complete and readable. A problem is a `ValueError` or `OSError` in one line."""
    check_model_options(training_args, model_args, mb_args)
    check_batch_sizes(training_args)
    stems_dir = check_audio(script_args.dataset_name, mb_args.stems_dir)
    inputs = {"stems folder": stems_dir, "data set folder": script_args.dataset_name}
    if not mb_args.tiny and model_args.model_name_or_path:
        inputs["model folder"] = model_args.model_name_or_path
    replace = check_output_dir(
        training_args.output_dir, inputs, training_args.resume_from_checkpoint, mb_args.overwrite_output_dir
    )
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
    if training_args.resume_from_checkpoint:
        check_checkpoint(Path(training_args.resume_from_checkpoint))
    return dataset, stems_dir, replace


def check_batch_sizes(training_args: SFTConfig) -> None:
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(training_args, name) < 1:
            raise ValueError(f"--{name} is {getattr(training_args, name)}; it must be 1 or more.")


def check_output_dir(output_dir: str, inputs: dict, resume_from_checkpoint: str | None, overwrite: bool) -> bool:
    """Whether training replaces an earlier run in `output_dir`, once the folder is safe to write: it is not the
    current folder or one that holds it, does not overlap an input (`inputs`: what it is -> its path, as
    `check_location` takes them; Hub ids are skipped), and is new, empty, the folder of the checkpoint to resume from,
    or with `overwrite` a folder whose marker says training wrote it. Raises `ValueError` or `FileExistsError`."""
    path = check_location(output_dir, inputs)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return False
    if not path.is_dir():
        raise FileExistsError(f"Output folder {path} is a file.")
    if resume_from_checkpoint and Path(resume_from_checkpoint).expanduser().resolve().parent == path:
        return False  # the run's own folder
    if not overwrite:
        raise FileExistsError(
            f"Output folder {path} already exists and is not empty: resume its run with --resume_from_checkpoint "
            f"{path}/checkpoint-N, replace it with --overwrite_output_dir, or choose another folder."
        )
    if (read_marker(path) or {}).get("kind") != "training":
        raise FileExistsError(
            f"Output folder {path} was not written by train_sft.py (no {MARKER} says training); "
            "--overwrite_output_dir replaces only such folders: remove it yourself or choose another."
        )
    return True


def check_checkpoint(checkpoint: Path) -> None:
    """`checkpoint` holds a trainer state and weights, and its weights (safetensors headers) and optimizer state
    (`optimizer.pt`, as the Trainer loads it) can be read. Raises `OSError` naming what is missing or damaged."""
    from safetensors import safe_open

    weights = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    if not (checkpoint / "trainer_state.json").is_file() or not any((checkpoint / w).is_file() for w in weights):
        raise FileNotFoundError(
            f"Checkpoint {checkpoint} is missing or incomplete (no trainer_state.json or no weights); "
            "pass a complete checkpoint-N folder of the output folder."
        )
    readers = {path: lambda p: safe_open(p, framework="pt").keys() for path in sorted(checkpoint.glob("*.safetensors"))}
    if (checkpoint / "optimizer.pt").is_file():
        readers[checkpoint / "optimizer.pt"] = lambda p: torch.load(
            p, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(p)
        )
    for path, read in readers.items():
        try:
            read(path)
        except Exception as err:  # safetensors, pickle and zip each raise their own kinds
            raise OSError(
                f"Checkpoint file {path} cannot be read ({error_summary(err)}); resume from another checkpoint-N."
            ) from None


def check_model_options(training_args: SFTConfig, model_args: ModelConfig, mb_args: MixingBuddyArguments) -> None:
    """Refuse what cannot train: component checkpoints instead of a MixingBuddy model, architecture settings that
    differ from the model folder's, a quantized language model without LoRA (its weights cannot be updated),
    quantizing the tiny random model (it has no checkpoint to quantize), and a quantized model sharded by FSDP."""
    if mb_args.audio_encoder is not None and not mb_args.tiny:
        raise ValueError(
            "train_sft.py trains a MixingBuddy model folder: run `mixingbuddy convert --audio-encoder "
            f"{mb_args.audio_encoder} --language-model {model_args.model_name_or_path} --out DIR` once and pass "
            "--model_name_or_path DIR (drop --audio_encoder)."
        )
    if model_args.load_in_4bit or model_args.load_in_8bit:
        if mb_args.tiny:
            raise ValueError("The tiny model is built in memory and cannot be quantized: drop load_in_4bit / load_in_8bit.")
        if not model_args.use_peft:
            raise ValueError("A quantized language model trains only through LoRA: set use_peft (as configs/paper.yaml).")
        if training_args.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
            raise ValueError("FSDP cannot shard a bitsandbytes-quantized model here: train it with DDP or ZeRO-2.")
    if not mb_args.tiny:
        check_model_folder(model_args.model_name_or_path, mb_args.architecture())


def check_model_folder(reference: str | None, architecture: dict) -> None:
    """`reference` (a folder or Hub id) holds a MixingBuddy model whose config agrees with `architecture`."""
    from transformers import PretrainedConfig

    if reference is None:
        raise ValueError("Name the model with --model_name_or_path: a folder `mixingbuddy convert` wrote, or --tiny.")
    try:
        config, _ = PretrainedConfig.get_config_dict(reference)
    except OSError as err:
        raise OSError(f"Cannot read the model config of {reference}: {error_summary(err)}") from None
    if config.get("model_type") != "mixingbuddy":
        raise ValueError(
            f"{reference} is not a MixingBuddy model (model_type {config.get('model_type')!r}): make one with "
            f"`mixingbuddy convert --audio-encoder m-a-p/MERT-v1-330M --language-model {reference} --out DIR` and "
            "pass --model_name_or_path DIR."
        )
    defaults = MixingBuddyConfig()
    for name, value in architecture.items():
        saved = config.get(name, getattr(defaults, name))
        if name == "mel_hop_length" and config.get("audio_frontend") != "log_mel":
            continue  # read only by the log-mel front-end
        if saved != value:
            raise ValueError(
                f"{name} is {saved!r} in {reference}, fixed when the model was converted; drop --{name} {value}, or "
                f"convert again with --{name.replace('_', '-')} {value}."
            )


@contextlib.contextmanager
def training_folder(output_dir: Path, replace: bool, main_process: bool):
    """Hold `output_dir` while a run writes it, marked as a training folder; with `replace` the earlier run there is
    moved aside first and deleted at the end. If the run fails before its first checkpoint, a folder that was new or
    empty is left as it was (removed with the parents it needed, or emptied) and an earlier run moved aside comes
    back; once a checkpoint exists the folder stays, to resume from. Only the main process touches the folder."""
    if not main_process:
        yield
        return
    remove_dead_temporaries(output_dir)
    fresh = replace or not output_dir.exists() or not any(output_dir.iterdir())
    aside = output_dir.with_name(f".{output_dir.name}.{os.getpid()}.replaced") if replace else None
    if aside:
        os.replace(output_dir, aside)
    created = next((p for p in reversed((output_dir, *output_dir.parents)) if not p.exists()), None)
    output_dir.mkdir(parents=True, exist_ok=True)
    if (read_marker(output_dir) or {}).get("kind") != "training":
        write_marker(output_dir, "training")
    try:
        yield
    except BaseException:
        if fresh and not any(output_dir.glob("checkpoint-*")):
            shutil.rmtree(created or output_dir, ignore_errors=True)
            if aside:
                os.replace(aside, output_dir)
            elif created is None:
                output_dir.mkdir()  # it was there, empty
        raise
    finally:
        if aside and aside.exists():
            shutil.rmtree(aside)


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
    replace: bool = False,
) -> MixingBuddySFTTrainer:
    """Train on `dataset` (from `prepare_data`) as the parsed arguments say, with extra trainer `callbacks`, and export
    the result to `training_args.output_dir` (`training_folder`; with `replace` in place of the earlier run there)."""
    output_dir = Path(training_args.output_dir).expanduser().resolve()
    with training_folder(output_dir, replace, training_args.process_index == 0):
        return train_and_export(script_args, training_args, model_args, mb_args, dataset, stems_dir, callbacks)


def train_and_export(script_args, training_args, model_args, mb_args, dataset, stems_dir: Path, callbacks):
    """`main` inside the held output folder."""
    training_args.remove_unused_columns = False
    training_args.dataset_kwargs = {"skip_prepare_dataset": True}
    training_args.restore_callback_states_from_checkpoint = True  # the projector-dropout schedule's decision
    evaluates = training_args.eval_strategy != "no"
    model, processor = build_model(
        mb_args, model_args, training_args.seed, training_args.activation_checkpointing, evaluates
    )
    if training_args.bf16 and model.device.type == "cpu" and compute_dtype(torch.bfloat16, "cpu") != torch.bfloat16:
        logger.warning("%s Training without bf16 autocast.", cpu_dtype_decision())
        training_args.bf16, training_args.mixed_precision = False, "no"  # the Trainer's accelerator reads the latter
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
        other_spread_db=mb_args.other_spread_db,
        stem_spread_db=mb_args.stem_spread_db,
    )
    if model.config.audio_frontend == "log_mel":
        fit_log_mel_statistics(model, collator.eval_copy(), train_dataset, mb_args.feature_statistics_clips)

    trainer = MixingBuddySFTTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        eval_data_collator=collator.eval_copy(),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        peft_config=lora_config(model_args, model) if model_args.use_peft else None,
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
    try:
        script_args, training_args, model_args, mb_args = parser.parse_args_and_config(argv)
        dataset, stems_dir, replace = prepare_data(script_args, training_args, model_args, mb_args)
    except (ValueError, OSError) as err:  # unknown arguments are a ValueError of HfArgumentParser's
        print(f"train_sft.py: error: {error_summary(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    return main(script_args, training_args, model_args, mb_args, dataset, stems_dir, callbacks, replace)
