"""Model folders: saving one in Hub layout or as an adapter atomically, and loading either (a folder or a Hub id) for
inference on a chosen device."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError

from ..files import atomic_folder, error_summary, is_local_only


ADAPTER_CONFIG = "adapter_config.json"  # peft's: an adapter folder, whose base is `base_model_name_or_path`
ADAPTER_FILES = (ADAPTER_CONFIG, "adapter_model.safetensors")
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
    """Save a peft model's adapter (LoRA, and the projector, layer weights and advice head trained in full) and its
    processor into `out_dir`. Its `adapter_config.json` names the base model folder or Hub id, as any peft adapter's
    does, so `load_model(out_dir)` and `AutoPeftModelForCausalLM.from_pretrained(out_dir, trust_remote_code=True)`
    load it in one call."""
    with atomic_folder(out_dir, overwrite=overwrite, merge=True) as staging, quiet_progress(is_small(model)):
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    _remove(out_dir, MODEL_FILES)  # an earlier run's full model would be loaded in place of this adapter
    return Path(out_dir)


def _remove(folder: str | os.PathLike, patterns) -> None:
    for pattern in patterns:
        for path in Path(folder).glob(pattern):
            path.unlink()


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
    load_in_4bit: bool = False,
):
    """A model folder or a Hub id (see `resolve_model`) -> (model, processor), the model in eval mode on `device`
    (default: this process's GPU, else the CPU).

    A Hub-layout folder loads through the Auto classes; an adapter folder (peft's `adapter_config.json`, as training
    with LoRA writes it) through `AutoPeftModelForCausalLM`, its base being the folder or Hub id the adapter names.
    Weights load in `dtype` (default bfloat16 on a GPU, float32 on the CPU; never a 16-bit type on a CPU that would
    emulate it), the audio tower in `audio_tower_dtype`. With `load_in_4bit` the language model's linear layers load
    in NF4 (double quantization), as QLoRA trains them: an adapter then computes exactly what it computed in training.
    The folder's own code is run (`trust_remote_code`): MixingBuddy's classes travel in every saved folder. From the
    Hub, that happens only for an id the caller typed, never for a default.
    """
    from transformers import AutoModelForCausalLM, AutoProcessor

    from .devices import compute_dtype, local_device

    model = resolve_model(model, is_default)
    device = torch.device(device) if device is not None else local_device()
    dtype = compute_dtype(dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32), device)
    kwargs = {"trust_remote_code": True, "dtype": dtype}
    if load_in_4bit:
        kwargs.update(quantization_config=nf4_config(dtype), device_map={"": device})
    is_adapter = is_adapter_folder(model)
    if is_adapter:
        from peft import AutoPeftModelForCausalLM as AutoModelForCausalLM  # noqa: N814  (loads the base it names)
    weights = sum(f.stat().st_size for f in Path(model).glob("*.safetensors")) if Path(model).is_dir() else None
    try:
        with quiet_progress(weights is not None and weights < 4 * SMALL_MODEL_PARAMETERS):  # float32 bytes
            processor = AutoProcessor.from_pretrained(model, trust_remote_code=True)
            loaded = AutoModelForCausalLM.from_pretrained(model, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # a folder that is not a whole model
        raise OSError(f"Cannot load the model in {model}: {error_summary(err)}") from None
    mixingbuddy = loaded.get_base_model() if is_adapter else loaded
    mixingbuddy.model.audio_tower.to(audio_tower_dtype)
    return (loaded if load_in_4bit else loaded.to(device)).eval(), processor


def is_adapter_folder(model: str) -> bool:
    """Whether `model` (a local folder, or a Hub id `resolve_model` accepted) is a peft adapter."""
    if Path(model).is_dir():
        return (Path(model) / ADAPTER_CONFIG).is_file()
    from huggingface_hub import file_exists

    return file_exists(model, ADAPTER_CONFIG)


def nf4_config(compute_dtype: torch.dtype):
    """The paper's 4-bit quantization of the language model: NF4 with double quantization."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
