"""`mixingbuddy export`: a training result (full, LoRA or QLoRA) as one plain Hub folder that loads without peft or
bitsandbytes."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..files import atomic_folder, check_output_folder
from .checkpoints import ADAPTER_RECORD, is_small, load_adapter_model, load_model, quiet_progress


def export_model(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    dtype: torch.dtype = torch.bfloat16,
    device: str = "cpu",
    overwrite: bool = False,
) -> Path:
    """Write `model_dir`'s model to `out_dir` in Hub layout, everything but the audio tower in `dtype`.

    An adapter folder's quantized language model is dequantized to float32 first and LoRA merged into it exactly, so
    the export computes what the adapter model computes, up to the rounding to `dtype`.
    """
    out = check_output_folder(out_dir, overwrite, kind="model")  # before minutes of loading
    if (Path(model_dir) / ADAPTER_RECORD).is_file():
        model, processor = load_adapter_model(model_dir, device, dequantize=True)
        model = model.merge_and_unload()
    else:
        model, processor = load_model(str(model_dir), device=device, dtype=torch.float32)
    tower = model.model.audio_tower
    model.to(dtype)
    tower.to(torch.float32)  # MixingBuddy keeps its frozen audio tower in float32 (`_keep_in_fp32_modules`)
    model.config.dtype = dtype
    with atomic_folder(out, overwrite=overwrite, kind="model") as staging, quiet_progress(is_small(model)):
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    return out
