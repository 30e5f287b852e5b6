"""Model folders: saving one in Hub layout or as an adapter atomically, and loading either (a folder or a Hub id) for
inference on a chosen device."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..files import atomic_folder, error_summary, is_local_only


ADAPTER_RECORD = "mixingbuddy_base.json"  # in an adapter folder: the component checkpoints that rebuild its base
ADAPTER_FILES = (ADAPTER_RECORD, "adapter_config.json", "adapter_model.safetensors")
MODEL_FILES = ("model*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json")
SMALL_MODEL_PARAMETERS = 50_000_000  # below this, saving and loading take a blink: their progress bars are noise


@contextmanager
def quiet_progress(quiet: bool = True) -> Iterator[None]:
    """Hide transformers' progress bars ("Writing model shards", "Loading weights") while `quiet`."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    if quiet:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was_enabled:
            logging.enable_progress_bar()


def is_small(model) -> bool:
    return sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS


def save_hub_folder(model, processor, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save model and processor in Hub layout (weights, configs, the remote-code files) into `out_dir`, all at once.

    Without `overwrite`, `out_dir` must be empty or absent; with it, the saved files replace their namesakes and the
    folder's other entries (checkpoints, say) stay.
    """
    with atomic_folder(out_dir, overwrite=overwrite, merge=True) as staging, quiet_progress(is_small(model)):
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    _remove(out_dir, ADAPTER_FILES)  # an earlier run's adapter would be loaded in place of this model
    return Path(out_dir)


def save_adapter_folder(model, processor, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save a peft model's adapter (LoRA, and the projector, layer weights and advice head trained in full), its
    processor and — for a base built by `load_components` — the record that rebuilds the base, into `out_dir`.
    `load_model(out_dir)` then loads it in one call."""
    with atomic_folder(out_dir, overwrite=overwrite, merge=True) as staging, quiet_progress(is_small(model)):
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        write_adapter_record(staging, model)
    _remove(out_dir, MODEL_FILES)  # an earlier run's full model would be loaded in place of this adapter
    return Path(out_dir)


def _remove(folder: str | os.PathLike, patterns) -> None:
    for pattern in patterns:
        for path in Path(folder).glob(pattern):
            path.unlink()


def write_adapter_record(folder: str | os.PathLike, model) -> None:
    """Write `mixingbuddy_base.json` into an adapter folder when `model`'s base was built by `load_components`."""
    record = getattr(model, "component_record", None)  # a peft model passes attribute lookups to its base
    if record is not None:
        (Path(folder) / ADAPTER_RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n")


def resolve_model(model: str, is_default: bool = False) -> str:
    """Where `model` is: a local folder, or a Hub model id the user typed, checked with one quick request.

    A path that exists is local. One that starts with ".", "/" or "~", has no "/" or more than one, or is a default
    (not typed by the user) is local only: missing, it fails at once. A plain "owner/name" is asked of the Hub once,
    with a short timeout; both failures are `FileNotFoundError`s in one line that say how to pass a local folder.
    """
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    if Path(model).expanduser().exists():
        raise FileNotFoundError(f"Model {model} is a file, not a model folder.")
    if is_default or is_local_only(model):
        made_by = " (`mixingbuddy demo` makes it)" if is_default else ""
        raise FileNotFoundError(f"Model folder {model} does not exist{made_by}; pass a model folder with --model DIR.")
    from huggingface_hub import model_info

    try:
        model_info(model, timeout=10)
    except Exception as err:  # offline, unknown repository, no access: all mean the same to the user
        raise FileNotFoundError(
            f"{model} is neither a local folder nor a model on the Hub ({error_summary(err)}); for a local folder, "
            f"pass its path as ./{model} or /absolute/path."
        ) from None
    return model


def load_model(
    model: str,
    is_default: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    audio_tower_dtype: torch.dtype = torch.float32,
):
    """A model folder or a Hub id (see `resolve_model`) -> (model, processor), the model in eval mode on `device`
    (default: this process's GPU, else the CPU).

    A Hub-layout folder loads through the Auto classes in `dtype` (default bfloat16 on a GPU, float32 on the CPU); an
    adapter folder written by training (`save_adapter_folder`) rebuilds its base from the component checkpoints it
    records, quantized as in training (its language model in the dtype it was trained in: `dtype` applies to Hub-layout
    folders), and applies the adapter. The audio tower runs in `audio_tower_dtype`. The
    folder's own code is run (`trust_remote_code`): MixingBuddy's classes travel in every saved folder. From the Hub,
    that happens only for an id the caller typed, never for a default.
    """
    from transformers import AutoModelForCausalLM, AutoProcessor

    from .components import local_device

    model = resolve_model(model, is_default)
    device = torch.device(device) if device is not None else local_device()
    if (Path(model) / ADAPTER_RECORD).is_file():
        return load_adapter_model(model, device, audio_tower_dtype)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    weights = sum(f.stat().st_size for f in Path(model).glob("*.safetensors")) if Path(model).is_dir() else None
    try:
        with quiet_progress(weights is not None and weights < 4 * SMALL_MODEL_PARAMETERS):  # float32 bytes
            processor = AutoProcessor.from_pretrained(model, trust_remote_code=True)
            loaded = AutoModelForCausalLM.from_pretrained(model, trust_remote_code=True, dtype=dtype)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # a folder that is not a whole model
        raise OSError(f"Cannot load the model in {model}: {error_summary(err)}") from None
    loaded.model.audio_tower.to(audio_tower_dtype)
    return loaded.to(device).eval(), processor


def load_adapter_model(
    folder: str | os.PathLike,
    device: str | torch.device | None = None,
    audio_tower_dtype: torch.dtype = torch.float32,
    dequantize: bool = False,
):
    """(peft model, processor) from an adapter folder: the base rebuilt from the component checkpoints and settings
    that `mixingbuddy_base.json` records, then the adapter. With `dequantize`, a quantized language model is turned
    back into plain float32 layers first (so that LoRA can be merged into them exactly: `export`)."""
    from peft import PeftModel
    from transformers import AutoProcessor
    from trl import ModelConfig

    from .components import load_components

    record = json.loads((Path(folder) / ADAPTER_RECORD).read_text())
    model_args = ModelConfig(**record["model_args"], use_peft=False)
    base, _ = load_components(
        record["audio_encoder"], record["language_model"], model_args, device=device,
        audio_tower_dtype=audio_tower_dtype, for_training=False, **record["config"],
    )
    if dequantize and getattr(base, "hf_quantizer", None) is not None:
        base.dequantize(dtype=torch.float32)
        base.is_loaded_in_4bit = base.is_loaded_in_8bit = False
    with quiet_progress(is_small(base)):
        model = PeftModel.from_pretrained(base, str(folder)).eval()
    with safe_open(Path(folder) / "adapter_model.safetensors", "pt") as saved:
        trained_dtype = saved.get_slice(next(iter(saved.keys()))).get_dtype()
    if trained_dtype in ("BF16", "F16") and not dequantize:
        # TRL trains a quantized model's adapter (LoRA and the modules trained in full) in bfloat16: run it as trained
        for name, param in model.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                param.data = param.data.to(torch.bfloat16 if trained_dtype == "BF16" else torch.float16)
    return model, AutoProcessor.from_pretrained(str(folder), trust_remote_code=True)
