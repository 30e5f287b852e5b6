"""Ranked (class-marginal) decoding: every valid answer scored by the model, the probability of each advice summed
over its wordings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from ..hub.vocabulary_mixingbuddy import END_OF_TURN, parse_advice, valid_answers


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
