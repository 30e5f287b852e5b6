"""Constrained decoding of advice: the model may only say the mix is balanced, or name a stem it may change with a dB
range that a flaw category asks for: every answer it lets through is "valid" by `advice_validity`.

The valid answers for a prompt (its stems and anchor) are `valid_answers`: the training responses for every stem the
advice may name and every category, each followed by the end-of-turn token. Their token sequences form a trie; at
every step `AdviceConstraintLogitsProcessor` keeps only the tokens that continue a valid answer, per batch row.

```python
inputs = processor(text=prompts, audio=clips, sampling_rate=24000)
kwargs = constrained_generate_kwargs(processor, anchors, stems_list, prompt_length=inputs["input_ids"].shape[1])
generated = model.generate(**inputs, **kwargs)[:, inputs["input_ids"].shape[1] :]
```
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ..hub.vocabulary_mixingbuddy import END_OF_TURN, STEMS, valid_answers, validate_stems


class TokenTrie:
    """Prefix tree of token sequences that each end with a token found nowhere else (such as eos)."""

    def __init__(self, sequences: Iterable[Sequence[int]]):
        self.root: dict = {}
        ends = []
        for sequence in sequences:
            node = self.root
            for token in sequence:
                node = node.setdefault(token, {})
            ends.append((sequence, node))
        for sequence, node in ends:
            if node:
                raise ValueError(f"Sequence {list(sequence)} is a prefix of another; end every sequence with eos.")
        self.max_length = max(len(sequence) for sequence, _ in ends)

    def next_tokens(self, prefix: Sequence[int]) -> list[int] | None:
        """Tokens that continue `prefix` towards a sequence; [] once a whole sequence is in `prefix` (what follows it
        is ignored); None when `prefix` leaves the trie."""
        node = self.root
        for token in prefix:
            if not node:
                return []
            node = node.get(token)
            if node is None:
                return None
        return list(node)


class AdviceConstraintLogitsProcessor(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that lets each batch row generate only a valid answer (see `valid_answers`) for its own stems
    and anchor, then only eos or padding.

    An answer is allowed only in the tokenization the tokenizer gives it as a whole, followed by the end-of-turn
    token — as the processor tokenizes training responses. Generating token by token, a model could spell the same text
    with other tokens (e.g. " dB" as " d" + "B"); the trie rules those out and keeps the model on the tokenization it
    was trained on.

    Works with left-padded batches (every row's answer starts at `prompt_length`), the KV cache, greedy search and
    sampling. With beam search or `num_return_sequences`, give one entry of `rows` per prompt: the rows of `input_ids`
    are grouped by prompt. If other processors have already ruled out every allowed token of a row (for instance
    `min_new_tokens` banning eos), the constraint wins: the allowed tokens get score 0.

    Args:
        tokenizer ([`PreTrainedTokenizerBase`]): the processor's tokenizer.
        prompt_length (`int`): `input_ids.shape[1]` of the prompts given to `generate`.
        rows (`Sequence[tuple[Iterable[str], str]]`): `(stems_present, anchor)` for each prompt of the batch.
    """

    def __init__(self, tokenizer, prompt_length: int, rows: Sequence[tuple[Iterable[str], str]]):
        self.prompt_length = prompt_length
        self.end_token_ids = sorted({tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.pad_token_id} - {None})
        tries = {}
        self.tries = []
        for stems_present, anchor in rows:
            key = (tuple(validate_stems(stems_present, anchor)), anchor)
            if key not in tries:
                answers = [answer + END_OF_TURN for answer in valid_answers(*key)]
                tries[key] = TokenTrie(tokenizer(answers, add_special_tokens=False)["input_ids"])
            self.tries.append(tries[key])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # input_ids: [batch * k, prompt_length + generated]; scores: [batch * k, vocab]
        if input_ids.shape[0] % len(self.tries):
            raise ValueError(f"{input_ids.shape[0]} rows cannot be grouped into {len(self.tries)} prompts.")
        per_prompt = input_ids.shape[0] // len(self.tries)
        allowed = torch.zeros_like(scores, dtype=torch.bool)  # [batch * k, vocab]
        for row, generated in enumerate(input_ids[:, self.prompt_length :].tolist()):
            next_tokens = self.tries[row // per_prompt].next_tokens(generated)
            if next_tokens is None:
                raise ValueError(
                    f"Row {row} left the valid answers: apply the processor from the first new token, with "
                    f"prompt_length = input_ids.shape[1] of the prompts ({self.prompt_length} given)."
                )
            allowed[row, next_tokens or self.end_token_ids] = True
        penalty = torch.zeros_like(scores).masked_fill(~allowed, -float("inf"))  # [batch * k, vocab]
        constrained = scores + penalty
        stuck = constrained.amax(dim=-1, keepdim=True).isneginf()  # [batch * k, 1]
        return torch.where(stuck, penalty, constrained)


def constrained_generate_kwargs(
    processor, anchors: Sequence[str], stems_list: Sequence[Iterable[str]] | None, prompt_length: int
) -> dict:
    """Keyword arguments for `model.generate` that constrain every row to a valid answer for its anchor and stems.

    `stems_list` gives the stems present per prompt (None: all four stems in every mix). Returns `logits_processor`
    and `max_new_tokens`, the length of the longest valid answer with its end-of-turn token, so no answer is cut short.
    """
    stems_list = [STEMS] * len(anchors) if stems_list is None else stems_list
    if len(stems_list) != len(anchors):
        raise ValueError(f"Got {len(anchors)} anchors but {len(stems_list)} stem sets; give one per prompt.")
    constraint = AdviceConstraintLogitsProcessor(processor.tokenizer, prompt_length, list(zip(stems_list, anchors)))
    max_new_tokens = max(trie.max_length for trie in constraint.tries)
    return {"logits_processor": LogitsProcessorList([constraint]), "max_new_tokens": max_new_tokens}
