"""Where a model runs and in which floating-point type: this process's device, and whether its CPU multiplies
bfloat16 and float16 matrices in hardware.

A CPU without AVX-512 BF16 or AMX emulates bfloat16 in software: a 512×512 matrix product took 410 ms in bfloat16
against 9.6 ms in float32 on a 2-core AMD EPYC without it (`bench/cpu_dtypes.py` measures any machine). On such a CPU
nothing of MixingBuddy multiplies in 16 bits.
"""

from __future__ import annotations

import functools
import logging
import os

import torch

FORCE_VARIABLE = "MIXINGBUDDY_CPU_HALF"  # "0" or "1": override what the CPU says (e.g. to time the float32 path)
HALF_DTYPES = (torch.bfloat16, torch.float16)
logger = logging.getLogger(__name__)


def local_device() -> torch.device:
    """This process's device: its own GPU under a multi-process launch (LOCAL_RANK), the GPU, or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return torch.device("cpu")


@functools.cache
def cpu_has_native(dtype: torch.dtype) -> bool:
    """Whether this CPU multiplies `dtype` (bfloat16 or float16) matrices in hardware: AVX-512 BF16 / AMX-BF16 for
    bfloat16, AVX-512 FP16 / AMX-FP16 for float16 (`torch.cpu.get_capabilities()`). `MIXINGBUDDY_CPU_HALF=0` or `1`
    overrides the answer."""
    forced = os.environ.get(FORCE_VARIABLE)
    if forced in ("0", "1"):
        return forced == "1"
    name = "bf16" if dtype == torch.bfloat16 else "fp16"
    capabilities = torch.cpu.get_capabilities()
    return any(capabilities.get(flag, False) for flag in (f"avx512_{name}", f"amx_{name}"))


def compute_dtype(dtype: torch.dtype, device: str | torch.device) -> torch.dtype:
    """`dtype`, or float32 where `device` is a CPU that would emulate a 16-bit `dtype`."""
    if torch.device(device).type == "cpu" and dtype in HALF_DTYPES and not cpu_has_native(dtype):
        return torch.float32
    return dtype


def cpu_dtype_decision() -> str:
    """One line saying what this CPU does with 16-bit matrix products."""
    native = [str(d).removeprefix("torch.") for d in HALF_DTYPES if cpu_has_native(d)]
    forced = f" ({FORCE_VARIABLE}={os.environ[FORCE_VARIABLE]})" if os.environ.get(FORCE_VARIABLE) in ("0", "1") else ""
    if native:
        return f"CPU matrix products: {' and '.join(native)} natively{forced}; anything else runs in float32."
    return f"CPU matrix products: no native bfloat16 or float16{forced}, so the CPU runs everything in float32."


def float32_where_emulated(model: torch.nn.Module) -> int:
    """Cast `model`'s 16-bit floating-point parameters to float32 when they sit on a CPU that would emulate them (TRL
    casts a quantized model's trainable parameters to bfloat16 on every device). Returns how many were cast."""
    cast = 0
    for param in model.parameters():
        if param.device.type == "cpu" and param.dtype in HALF_DTYPES and not cpu_has_native(param.dtype):
            param.data = param.data.float()
            cast += 1
    if cast:
        logger.warning("%s Cast %d bfloat16/float16 parameters to float32.", cpu_dtype_decision(), cast)
    return cast
