"""How far the frozen audio tower's features move in bfloat16: a MERT-v1-330M-shaped HuBERT with random weights on
10 s of noise, relative L2 difference of every hidden state against float32, and the time of each.

    .venv/bin/python bench/tower_precision.py
"""

from __future__ import annotations

import time

import torch
from transformers import HubertConfig, HubertModel

from mixingbuddy.hub.configuration_mixingbuddy import MERT_V1_330M_AUDIO_CONFIG


def main() -> None:
    torch.manual_seed(0)
    config = HubertConfig(**MERT_V1_330M_AUDIO_CONFIG)
    towers = {torch.float32: HubertModel(config).eval()}
    towers[torch.bfloat16] = HubertModel(config).eval()
    towers[torch.bfloat16].load_state_dict(towers[torch.float32].state_dict())
    towers[torch.bfloat16].to(torch.bfloat16)
    audio = 0.1 * torch.randn(1, 240_000)
    outputs, seconds = {}, {}
    with torch.no_grad():
        for dtype, tower in towers.items():
            started = time.perf_counter()
            result = tower(audio.to(dtype), output_hidden_states=True)
            seconds[dtype] = time.perf_counter() - started
            outputs[dtype] = [*result.hidden_states[:-1], result.last_hidden_state]  # MixingBuddy's 25 states
    drift = [((a - b.float()).norm() / a.norm()).item() for a, b in zip(outputs[torch.float32], outputs[torch.bfloat16])]
    print(f"relative L2 drift of bfloat16 against float32 over the 25 states: min {min(drift):.2%}, "
          f"max {max(drift):.2%}, mean {sum(drift) / len(drift):.2%}")
    print(f"seconds for 10 s of audio: float32 {seconds[torch.float32]:.2f}, bfloat16 {seconds[torch.bfloat16]:.2f}")


if __name__ == "__main__":
    main()
