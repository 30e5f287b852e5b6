"""Ranked (class-marginal) decoding: every valid answer scored by the model, the probability of each advice summed
over its wordings."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch

from ..hub.vocabulary_mixingbuddy import END_OF_TURN, parse_advice, valid_answers


@torch.no_grad()
def rank_advice(
    model, processor, inputs, rows: Sequence[tuple[Iterable[str], str]], chunk_size: int | None = None
) -> list[str]:
    """Class-marginal decoding: for each prompt, score every valid answer (`valid_answers` of its stems and anchor) by
    the model's log-likelihood, add up the probabilities of the answers that give the same advice (stem, direction),
    take the most likely advice, then its most likely size (dB range) the same way, and return its most likely wording.

    Greedy decoding follows a single token path: it commits to an advice at the decision's first words (the same in
    every wording) and then to one wording; summing over the wordings scores each advice as a whole. `inputs` are the
    processor's (left-padded) prompts with audio and `rows` one (stems present, anchor) pair per prompt; `chunk_size`
    as in `score_answers`.
    """
    chosen = []
    for row_answers, row_scores in zip(*score_answers(model, processor, inputs, rows, chunk_size)):
        advice = [parse_advice(a) for a in row_answers]
        candidates = list(range(len(row_answers)))
        for fields in (("stem", "direction"), ("min_db", "max_db")):  # the advice first, then its size
            groups: dict[tuple, list[int]] = {}
            for j in candidates:
                groups.setdefault(tuple(advice[j][f] for f in fields), []).append(j)
            candidates = max(groups.values(), key=lambda js: torch.logsumexp(row_scores[js], 0))
        chosen.append(row_answers[max(candidates, key=lambda j: row_scores[j])])
    return chosen


@torch.no_grad()
def score_answers(
    model, processor, inputs, rows: Sequence[tuple[Iterable[str], str]], chunk_size: int | None = None
) -> tuple[list[list[str]], list[torch.Tensor]]:
    """(valid answers, their log-likelihoods on the CPU) for each prompt.

    The prompts run once; the candidates are scored `chunk_size` at a time (default: as many as one prompt has, about
    90), each chunk on its own copy of its prompts' KV cache, so memory grows with the chunk, not with the batch.
    Every tensor lives on the model's device.
    """
    tokenizer, device = processor.tokenizer, model.device
    prompt = model(**inputs, use_cache=True, logits_to_keep=1)  # only the last position predicts an answer
    answers = [valid_answers(stems, anchor) for stems, anchor in rows]
    owner = torch.tensor([i for i, row_answers in enumerate(answers) for _ in row_answers], device=device)
    ids = [tokenizer(a + END_OF_TURN, add_special_tokens=False)["input_ids"] for row in answers for a in row]
    length = max(map(len, ids))
    candidates = torch.tensor([x + [tokenizer.pad_token_id] * (length - len(x)) for x in ids], device=device)
    lengths = torch.tensor([len(x) for x in ids], device=device)
    candidate_mask = (torch.arange(length, device=device)[None] < lengths[:, None]).long()  # [candidates, length]
    attention_mask = inputs["attention_mask"].to(device)
    chunk_size = chunk_size or max(map(len, answers))

    scores = []
    for start in range(0, len(ids), chunk_size):
        chunk = slice(start, start + chunk_size)
        logits = model(
            input_ids=candidates[chunk],
            attention_mask=torch.cat([attention_mask[owner[chunk]], candidate_mask[chunk]], dim=1),
            cache=_select_rows(prompt.cache, owner[chunk]),
            use_cache=True,
        ).logits.float()  # [chunk, length, vocab]
        # the first answer token is predicted by the prompt's last position, the others by the answer's own positions
        first = prompt.logits[owner[chunk], -1:].float()
        token_logprobs = torch.cat([first, logits[:, :-1]], dim=1).log_softmax(-1)
        token_logprobs = token_logprobs.gather(-1, candidates[chunk][..., None])[..., 0]
        scores.append((token_logprobs * candidate_mask[chunk]).sum(1))  # [chunk] log p(answer | prompt)
    scores = torch.cat(scores).cpu().split([len(row) for row in answers])
    return answers, list(scores)


def _select_rows(cache, rows: torch.Tensor):
    """A cache holding the given batch rows of `cache` (which stays as it is): the layers are copied, then reordered."""
    selected = copy.copy(cache)
    selected.layers = [copy.copy(layer) for layer in cache.layers]
    selected.reorder_cache(rows)  # index_select on each layer's keys and values: new tensors, the old ones untouched
    return selected
