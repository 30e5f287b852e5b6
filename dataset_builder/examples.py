"""Data-set rows for one gated chunk: which stem is flawed, by how much, and the instruction and response texts.

Every random choice of a row comes from its own seed, derived from (base seed, track, chunk, target, anchor,
category), so rows do not depend on the order or the number of processes that make them.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import permutations

from mixingbuddy.hub.vocabulary_mixingbuddy import (
    CATEGORIES,
    INSTRUCTION_TEMPLATES,
    RESPONSE_TEMPLATES,
    STEMS,
    TARGET_STEMS,
    format_instruction,
    format_response,
)

from .seeding import keyed_rng

TARGET_ANCHOR_PAIRS = tuple(permutations(TARGET_STEMS, 2))  # (target, anchor): 3 targets x 2 anchors


def make_row(
    seed: int, track: str, chunk_index: int, chunk_seconds: float, target: str, anchor: str, category: str
) -> dict:
    """One row: metadata to render the flawed mix, and the conversation texts."""
    rng = keyed_rng(seed, track, chunk_index, target, anchor, category)
    instruction_template = int(rng.integers(len(INSTRUCTION_TEMPLATES)))
    response_template = int(rng.integers(len(RESPONSE_TEMPLATES[category])))
    flaw = CATEGORIES[category]
    return {
        "uid": f"{_uid_part(track)}|{chunk_index:04d}|{target}|{anchor}|{category}",
        "track": track,
        "chunk_index": chunk_index,
        "start_sec": chunk_index * chunk_seconds,
        "end_sec": (chunk_index + 1) * chunk_seconds,
        "stems_present": list(STEMS),
        "anchor_stem": anchor,
        "target_stem": target,
        "error_category": category,
        "gain_db": float(rng.uniform(flaw.min_gain_db, flaw.max_gain_db)),  # exactly 0.0 for no_error
        "min_gain_db": flaw.min_gain_db,
        "max_gain_db": flaw.max_gain_db,
        "instruction": format_instruction(anchor, STEMS, instruction_template),
        "response": format_response(category, target, response_template, anchor),
        "instruction_template": instruction_template,
        "response_template": response_template,
    }


def _uid_part(text: str) -> str:
    """`text` with "%" and the uid's separator "|" percent-encoded, so that a uid reads back unambiguously."""
    return text.replace("%", "%25").replace("|", "%7C")


def expanded_rows(seed: int, track: str, chunk_index: int, chunk_seconds: float) -> Iterator[dict]:
    """The paper's data: every (target, anchor) pair x every category, 30 rows."""
    for target, anchor in TARGET_ANCHOR_PAIRS:
        for category in CATEGORIES:
            yield make_row(seed, track, chunk_index, chunk_seconds, target, anchor, category)


def sampled_rows(seed: int, track: str, chunk_index: int, chunk_seconds: float) -> Iterator[dict]:
    """One row with a random (target, anchor) pair and category, all equally likely (a subset of `expanded_rows`)."""
    rng = keyed_rng(seed, track, chunk_index, "sampled")
    target, anchor = TARGET_ANCHOR_PAIRS[rng.integers(len(TARGET_ANCHOR_PAIRS))]
    category = tuple(CATEGORIES)[rng.integers(len(CATEGORIES))]
    yield make_row(seed, track, chunk_index, chunk_seconds, target, anchor, category)
