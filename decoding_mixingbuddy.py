"""Constrained decoding of advice: the model may only say the mix is balanced, or name a stem it may change with a dB
range that a flaw category asks for: every answer it lets through is "valid" by `processing_mixingbuddy.advice_validity`.

The valid answers for a prompt (its stems and anchor) are the training responses (`RESPONSE_TEMPLATES`) for every stem
the advice may name and every category, each followed by the end-of-turn token. Their token sequences form a trie; at
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

from processing_mixingbuddy import (
    CATEGORIES,
    RESPONSE_TEMPLATES,
    STEMS,
    advice_stems,
    format_response,
    parse_advice,
    validate_stems,
)

END_OF_TURN = "<|im_end|>"  # what the processor appends to every training response; generation's eos


def valid_answers(stems_present: Iterable[str], anchor: str) -> list[str]:
    """Every response template filled in for every stem the advice may name and every category."""
    stems = advice_stems(validate_stems(stems_present, anchor), anchor)
    answers = []
    for name, category in CATEGORIES.items():
        targets = [None] if category.direction == "none" else stems
        answers += [format_response(name, stem, i) for stem in targets for i in range(len(RESPONSE_TEMPLATES[name]))]
    return answers


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


@torch.no_grad()
def rank_advice(model, processor, inputs, rows: Sequence[tuple[Iterable[str], str]]) -> list[str]:
    """Class-marginal decoding: for each prompt, score every valid answer (`valid_answers` of its stems and anchor) by
    the model's log-likelihood, add up the probabilities of the answers that give the same advice (stem, direction),
    take the most likely advice, then its most likely size (dB range) the same way, and return its most likely wording.

    Greedy decoding splits an advice's probability across its ten wordings and picks a single token path, so an advice
    worded in many different ways ("the mix is balanced", "all stems sit well", …) loses to one whose wordings share
    their first tokens; summing over wordings removes that bias. `inputs` are the processor's (left-padded) prompts
    with audio and `rows` one (stems present, anchor) pair per prompt. The prompts run once; their KV cache is shared.
    """
    tokenizer = processor.tokenizer
    prompt = model(**inputs, use_cache=True)
    answers = [valid_answers(stems, anchor) for stems, anchor in rows]
    owner = torch.tensor([i for i, row_answers in enumerate(answers) for _ in row_answers])  # [candidates]
    flat = [a for row_answers in answers for a in row_answers]
    ids = [tokenizer(a + END_OF_TURN, add_special_tokens=False)["input_ids"] for a in flat]
    length = max(map(len, ids))
    candidates = torch.tensor([x + [tokenizer.pad_token_id] * (length - len(x)) for x in ids])  # [candidates, length]
    candidate_mask = (torch.arange(length)[None] < torch.tensor([len(x) for x in ids])[:, None]).long()

    cache = prompt.cache
    cache.reorder_cache(owner.to(model.device))
    logits = model(
        input_ids=candidates.to(model.device),
        attention_mask=torch.cat([inputs["attention_mask"][owner], candidate_mask], dim=1).to(model.device),
        cache=cache,
        use_cache=True,
    ).logits.float()  # [candidates, length, vocab]
    # the first answer token is predicted by the prompt's last position, the others by the answer's own positions
    first = prompt.logits[owner, -1:].float()
    token_logprobs = torch.cat([first, logits[:, :-1]], dim=1).log_softmax(-1)
    token_logprobs = token_logprobs.gather(-1, candidates.to(model.device)[..., None])[..., 0].cpu()
    scores = (token_logprobs * candidate_mask).sum(1)  # [candidates] log p(answer | prompt)

    chosen, start = [], 0
    for row_answers in answers:
        row_scores = scores[start : start + len(row_answers)]
        start += len(row_answers)
        advice = [parse_advice(a) for a in row_answers]
        candidates = list(range(len(row_answers)))
        for fields in (("stem", "direction"), ("min_db", "max_db")):  # the advice first, then its size
            groups: dict[tuple, list[int]] = {}
            for j in candidates:
                groups.setdefault(tuple(advice[j][f] for f in fields), []).append(j)
            candidates = max(groups.values(), key=lambda js: torch.logsumexp(row_scores[js], 0))
        chosen.append(row_answers[max(candidates, key=lambda j: row_scores[j])])
    return chosen


__all__ = [
    "AdviceConstraintLogitsProcessor",
    "TokenTrie",
    "constrained_generate_kwargs",
    "rank_advice",
    "valid_answers",
]
