"""Model folders in Hub layout: saving one atomically, and loading one (a folder or a Hub id) for inference."""

from __future__ import annotations

import os
from pathlib import Path

from ..files import atomic_folder


def save_hub_folder(model, processor, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save model and processor in Hub layout (weights, configs, the remote-code files) into `out_dir`, all at once.

    Without `overwrite`, `out_dir` must be empty or absent; with it, the saved files replace their namesakes and the
    folder's other entries (checkpoints, say) stay.
    """
    with atomic_folder(out_dir, overwrite=overwrite, merge=True) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    return Path(out_dir)


def load_model(model: str):
    """A Hub-layout folder or Hub id -> (model, processor), the model in eval mode."""
    from transformers import AutoModelForCausalLM, AutoProcessor

    is_hub_id = model.count("/") == 1 and not model.startswith((".", "/"))
    if not Path(model).exists() and not is_hub_id:
        raise FileNotFoundError(f"Model folder {model} does not exist (run `mixingbuddy demo` to make one).")
    processor = AutoProcessor.from_pretrained(model, trust_remote_code=True)
    return AutoModelForCausalLM.from_pretrained(model, trust_remote_code=True).eval(), processor
