"""Matrix-product time on this machine's CPU in float32, bfloat16 and float16, side by side, and what MixingBuddy
decides from it (`mixingbuddy.models.devices`).

    .venv/bin/python bench/cpu_dtypes.py [--size 512] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from mixingbuddy.models.devices import cpu_dtype_decision, cpu_has_native

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def matmul_ms(size: int, dtype: torch.dtype, repeats: int) -> float:
    """Median milliseconds of one [size, size] @ [size, size] product in `dtype`."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(dtype) for _ in range(2))
    a @ b  # warm-up: kernels chosen, memory allocated
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 1000 * sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    capabilities = torch.cpu.get_capabilities()
    print(f"CPU: {capabilities.get('cpu_name', 'unknown')}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, kernels {torch.backends.cpu.get_cpu_capability()}")
    baseline = matmul_ms(args.size, torch.float32, args.repeats)
    for dtype in DTYPES:
        ms = baseline if dtype == torch.float32 else matmul_ms(args.size, dtype, args.repeats)
        native = "" if dtype == torch.float32 else f"  native: {'yes' if cpu_has_native(dtype) else 'no'}"
        print(f"{str(dtype).removeprefix('torch.'):>9}: {ms:8.2f} ms per {args.size}x{args.size} product, "
              f"{ms / baseline:6.1f}x float32{native}")
    print(cpu_dtype_decision())


if __name__ == "__main__":
    main()
