"""Model folders in Hub layout: saving one atomically, and loading one (a folder or a Hub id) for inference."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..files import atomic_folder, is_local_only


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
    return Path(out_dir)


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
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(
            f"{model} is neither a local folder nor a model on the Hub ({reason}); for a local folder, pass its path "
            f"as ./{model} or /absolute/path."
        ) from None
    return model


def load_model(model: str, is_default: bool = False):
    """A Hub-layout folder or a Hub id (see `resolve_model`) -> (model, processor), the model in eval mode.

    The folder's own code is run (`trust_remote_code`): MixingBuddy's classes travel in every saved folder. From the
    Hub, that happens only for an id the caller typed, never for a default.
    """
    from transformers import AutoModelForCausalLM, AutoProcessor

    model = resolve_model(model, is_default)
    weights = sum(f.stat().st_size for f in Path(model).glob("*.safetensors")) if Path(model).is_dir() else None
    with quiet_progress(weights is not None and weights < 4 * SMALL_MODEL_PARAMETERS):  # float32 bytes
        processor = AutoProcessor.from_pretrained(model, trust_remote_code=True)
        return AutoModelForCausalLM.from_pretrained(model, trust_remote_code=True).eval(), processor
