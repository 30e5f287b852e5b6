"""The flawed-mix data set: a `datasets` builder over a MUSDB18HQ-layout folder, a stem cache and a synthetic corpus.

Attributes load on first use, so `mixingbuddy --help` does not import `datasets`.
"""

import importlib

_EXPORTS = {
    "MixingBuddyGain": "builder",
    "MixingBuddyGainConfig": "builder",
    "StemCache": "stem_cache",
    "render_flawed_mix": "stem_cache",
    "augment_mix": "augment",
    "build_dataset": "build",
    "CorpusError": "corpus",
    "GatingThresholds": "gating",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
