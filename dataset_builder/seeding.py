"""Seeds derived from keys, identical in every process and run (unlike Python's salted `hash`)."""

from __future__ import annotations

import hashlib

import numpy as np


def stable_hash(*keys) -> int:
    """A 128-bit integer from the keys' text."""
    text = "\x1f".join(str(key) for key in keys)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little")


def keyed_rng(seed: int, *keys) -> np.random.Generator:
    """A generator seeded by the base seed and a stable hash of the keys."""
    return np.random.default_rng(np.random.SeedSequence([seed, stable_hash(*keys)]))
