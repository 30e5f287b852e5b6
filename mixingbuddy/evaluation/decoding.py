"""The three decodings of advice for a batch of prompts with their audio: greedy, constrained and ranked."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from . import DECODINGS
from .constrained import constrained_generate_kwargs
from .ranked import rank_advice


@torch.no_grad()
def decode_advice(
    model,
    processor,
    inputs,
    prompts: Sequence[tuple[Iterable[str], str]],
    decoding: str = "greedy",
    ranked_chunk_size: int | None = None,
) -> list[str]:
    """Answers for `inputs` (the processor's left-padded prompts and audio, on the model's device), one per
    (stems present, anchor) in `prompts`: greedy; greedy constrained to valid advice; or ranked, the valid advice with
    the largest probability summed over its wordings (`rank_advice`, `ranked_chunk_size` candidates at a time)."""
    if decoding not in DECODINGS:
        raise ValueError(f"Unknown decoding {decoding!r}; choose from {list(DECODINGS)}.")
    if decoding == "ranked":
        return rank_advice(model, processor, inputs, prompts, ranked_chunk_size)
    prompt_length = inputs["input_ids"].shape[1]
    kwargs = {}
    if decoding == "constrained":
        kwargs = constrained_generate_kwargs(processor, [a for _, a in prompts], [s for s, _ in prompts], prompt_length)
    generated = model.generate(**inputs, do_sample=False, **kwargs)
    return processor.batch_decode(generated[:, prompt_length:], skip_special_tokens=True)
