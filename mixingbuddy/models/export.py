"""`mixingbuddy export`: a training result (full, LoRA or QLoRA) as one plain Hub folder that loads without peft or
bitsandbytes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..files import atomic_folder, check_output_folder, error_summary, push_folder_to_hub
from .card import write_model_card
from .checkpoints import ADAPTER_CONFIG, is_small, load_model, quiet_progress


def export_model(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    dtype: torch.dtype = torch.bfloat16,
    device: str = "cpu",
    overwrite: bool = False,
    eval_dir: str | os.PathLike | None = None,
    push_to_hub: str | None = None,
) -> Path:
    """Write `model_dir`'s model to `out_dir` in Hub layout, everything but the audio tower in `dtype`, with a model
    card (its metrics and confusion plots from `eval_dir`, a folder `mixingbuddy evaluate` wrote); with `push_to_hub`,
    upload it to that Hub repository.

    An adapter folder's LoRA is merged into its base loaded in float32 (`merge_and_unload`), so the export computes
    what the adapter computes on that base, up to the rounding to `dtype`. `out_dir` may not be, hold or lie in the
    model, its base or `eval_dir`; all is checked before the model loads.
    """
    if eval_dir is not None:
        check_eval_dir(Path(eval_dir))
    base = adapter_base(model_dir)
    inputs = {"model": model_dir, "base model": base, "evaluation folder": eval_dir}
    protected = {name: path for name, path in inputs.items() if path is not None}
    out = check_output_folder(out_dir, overwrite, kind="model", protected=protected)  # before minutes of loading
    model, processor = load_model(str(model_dir), device=device, dtype=torch.float32)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    tower = model.model.audio_tower
    model.to(dtype)
    tower.to(torch.float32)  # MixingBuddy keeps its frozen audio tower in float32 (`_keep_in_fp32_modules`)
    model.config.dtype = dtype
    with (
        atomic_folder(out, overwrite=overwrite, kind="model", protected=protected) as staging,
        quiet_progress(is_small(model)),
    ):
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        write_model_card(staging, model.config, push_to_hub or str(out), eval_dir, (base,) if base else ())
    if push_to_hub:
        push_folder_to_hub(out, push_to_hub)
    return out


def adapter_base(model_dir: str | os.PathLike) -> str | None:
    """The base model an adapter folder names (peft's `base_model_name_or_path`), or None for a full model."""
    try:
        return json.loads((Path(model_dir) / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None


def check_eval_dir(eval_dir: Path) -> None:
    """Raise `ValueError` or `FileNotFoundError` unless `eval_dir` holds what `mixingbuddy evaluate` writes: metrics.md
    and a metrics.json object (whose "run", if any, is an object)."""
    if not (eval_dir / "metrics.json").is_file() or not (eval_dir / "metrics.md").is_file():
        raise FileNotFoundError(f"{eval_dir} holds no metrics.json and metrics.md: pass a folder that evaluate wrote.")
    try:
        metrics = json.loads((eval_dir / "metrics.json").read_text())
    except ValueError as err:
        raise ValueError(f"{eval_dir / 'metrics.json'} is not JSON ({error_summary(err)}).") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("run", {}), dict):
        raise ValueError(f"{eval_dir / 'metrics.json'} is not the object mixingbuddy evaluate writes.")
