"""Helpers shared by the tests: example clips and prompts."""

import numpy as np


def make_clips(n: int, seconds: float = 10.0, rate: int = 24000, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32) for _ in range(n)]


def make_prompts(processor, anchors=("vocals", "drums", "bass")) -> list[str]:
    """Prompts of different lengths (different instruction templates), so that batches need padding."""
    return [
        processor.apply_chat_template(processor.build_conversation(a, template=3 * i), add_generation_prompt=True)
        for i, a in enumerate(anchors)
    ]
