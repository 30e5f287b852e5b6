"""Constrained decoding of advice: the token trie, the logits mask, generation with the tiny random model, validity."""

import numpy as np
import pytest
import torch
from helpers import make_clips

from mixingbuddy.evaluation.constrained import AdviceConstraintLogitsProcessor, TokenTrie, constrained_generate_kwargs
from mixingbuddy.hub.vocabulary_mixingbuddy import (
    END_OF_TURN,
    STEMS,
    TARGET_STEMS,
    advice_validity,
    format_response,
    parse_advice,
    reference_sentence,
    valid_answers,
)

# (stems present, anchor) per prompt: different anchors, and a mix without vocals whose only changeable stem is drums.
ROWS = [(STEMS, "vocals"), (STEMS, "drums"), (("bass", "drums", "other"), "bass")]


def test_trie_next_tokens():
    trie = TokenTrie([[1, 2, 3, 9], [1, 2, 4, 9], [5, 9]])
    assert sorted(trie.next_tokens([])) == [1, 5]
    assert sorted(trie.next_tokens([1, 2])) == [3, 4]
    assert trie.next_tokens([5]) == [9]
    assert trie.next_tokens([1, 2, 3, 9]) == [] and trie.next_tokens([5, 9, 0, 0]) == []  # complete; padding ignored
    assert trie.next_tokens([1, 3]) is None
    assert trie.max_length == 4
    with pytest.raises(ValueError, match="prefix"):
        TokenTrie([[1, 2], [1, 2, 9]])


# "With the vocals as the reference, I compared the bass and the drums. The drums are too loud: …"
DRUMS_LOUD = format_response("very_loud", "drums", 0, anchor="vocals")


def encode(tokenizer, texts):
    return tokenizer([t + END_OF_TURN for t in texts], add_special_tokens=False)["input_ids"]


def allowed_after(tokenizer, rows, generated, scores=None):
    """Tokens left finite by the constraint for each row of generated ids (after a 2-token left-padded prompt)."""
    prompt = [tokenizer.pad_token_id, 7]
    input_ids = torch.tensor([prompt + g for g in generated])  # [rows, 2 + generated]
    scores = torch.zeros(len(generated), len(tokenizer)) if scores is None else scores
    out = AdviceConstraintLogitsProcessor(tokenizer, prompt_length=2, rows=rows)(input_ids, scores)
    return [set(row.isfinite().nonzero().flatten().tolist()) for row in out], out


def test_mask_on_a_hand_made_prefix(tiny):
    _, processor = tiny
    tokenizer = processor.tokenizer
    eos, pad = tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.pad_token_id
    answer = encode(tokenizer, [DRUMS_LOUD])[0]
    valid = encode(tokenizer, valid_answers(STEMS, "vocals"))
    k = len(tokenizer(reference_sentence("vocals") + "The drums", add_special_tokens=False)["input_ids"])
    (after_prefix,), _ = allowed_after(tokenizer, [(STEMS, "vocals")], [answer[:k]])
    assert after_prefix == {ids[k] for ids in valid if ids[:k] == answer[:k]} and answer[k] in after_prefix

    # Anchor drums: "With the drums as the reference, I compared the bass and the vocals. The" may not go on with
    # " drums"; a finished answer (eos, then padding) allows only eos or pad.
    prefix = reference_sentence("drums") + "The"
    j = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    naming_the_anchor = encode(tokenizer, [prefix + " drums are too loud"])[0]
    (after_the,), _ = allowed_after(tokenizer, [(STEMS, "drums")], [naming_the_anchor[:j]])
    assert naming_the_anchor[j] not in after_the and after_the
    (finished,), _ = allowed_after(tokenizer, [(STEMS, "vocals")], [answer + [pad, pad]])
    assert finished == {eos, pad}
    with pytest.raises(ValueError, match="left the valid answers"):
        allowed_after(tokenizer, [(STEMS, "drums")], [answer[:k]])


def test_mask_keeps_allowed_scores_groups_beams_and_wins_over_other_bans(tiny):
    _, processor = tiny
    tokenizer = processor.tokenizer
    rows = [(STEMS, "vocals"), (("bass", "drums", "other"), "bass")]
    firsts = [{ids[0] for ids in encode(tokenizer, valid_answers(*row))} for row in rows]
    scores = torch.randn(4, len(tokenizer))
    allowed, out = allowed_after(tokenizer, rows, [[]] * 4, scores)  # 2 rows per prompt, as with num_beams=2
    assert allowed == [firsts[0], firsts[0], firsts[1], firsts[1]]
    for row, tokens in enumerate(allowed):
        torch.testing.assert_close(out[row, list(tokens)], scores[row, list(tokens)])

    banned = torch.zeros(2, len(tokenizer))
    banned[0, list(firsts[0])] = -float("inf")  # another processor ruled out every allowed token of row 0
    allowed, out = allowed_after(tokenizer, rows, [[]] * 2, banned)
    assert allowed == firsts and (out[0, list(firsts[0])] == 0).all()


def prompts_for(processor, rows):
    """One chat prompt per (stems, anchor), with instruction templates 0, 3, 6, ... (prompts of different lengths)."""
    conversations = [processor.build_conversation(a, stems, template=3 * i) for i, (stems, a) in enumerate(rows)]
    return [processor.apply_chat_template(c, add_generation_prompt=True) for c in conversations]


def generate(model, processor, rows, prompts, constrained, **kwargs):
    """Greedy answer ids [len(rows), new tokens] of the prompts, left-padded into one batch, constrained or not."""
    inputs = processor(text=prompts, audio=make_clips(len(prompts)), sampling_rate=24000)
    n = inputs["input_ids"].shape[1]
    constraint = constrained_generate_kwargs(processor, [a for _, a in rows], [s for s, _ in rows], prompt_length=n)
    if not constrained:
        constraint = {"max_new_tokens": constraint["max_new_tokens"]}
    with torch.no_grad():
        return model.generate(**inputs, **constraint, **kwargs)[:, n:]


@pytest.fixture(scope="module")
def generations(tiny):
    """Greedy answer ids for the ROWS prompts: (unconstrained, constrained)."""
    model, processor = tiny
    prompts = prompts_for(processor, ROWS)
    return tuple(generate(model, processor, ROWS, prompts, constrained) for constrained in (False, True))


def test_constrained_generation_gives_a_valid_answer_for_each_row(tiny, generations):
    _, processor = tiny
    tokenizer = processor.tokenizer
    eos, pad = tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.pad_token_id
    _, constrained = generations
    for (stems, anchor), ids in zip(ROWS, constrained.tolist()):
        assert eos in ids and set(ids[ids.index(eos) + 1 :]) <= {pad}
        text = tokenizer.decode(ids, skip_special_tokens=True)
        assert text in valid_answers(stems, anchor)
        assert advice_validity(parse_advice(text), stems, anchor) == "valid"
        advice = text.removeprefix(reference_sentence(anchor, stems))  # the anchor is restated first, then never
        never_named = {anchor} | {stem for stem in TARGET_STEMS if stem not in stems}
        assert text != advice and not any(stem in advice.lower() for stem in never_named)


def test_constrained_generation_is_the_same_alone_and_without_kv_cache(tiny, generations):
    model, processor = tiny
    _, constrained = generations
    decode = processor.tokenizer.batch_decode
    prompts = prompts_for(processor, ROWS)
    no_cache = generate(model, processor, ROWS, prompts, True, use_cache=False)
    assert decode(no_cache, skip_special_tokens=True) == decode(constrained, skip_special_tokens=True)
    for i, row in enumerate(ROWS):
        alone = generate(model, processor, [row], prompts[i : i + 1], True)
        assert decode(alone, skip_special_tokens=True) == decode(constrained[i : i + 1], skip_special_tokens=True)


def test_unconstrained_generation_of_the_untrained_model_is_mostly_not_valid(tiny, generations):
    _, processor = tiny
    free, _ = generations
    texts = processor.tokenizer.batch_decode(free, skip_special_tokens=True)
    validity = [advice_validity(parse_advice(t), stems, anchor) for (stems, anchor), t in zip(ROWS, texts)]
    assert validity.count("valid") <= 1, texts


@pytest.mark.parametrize("stems, anchor", [(STEMS, "bass"), (STEMS, "vocals"), (("bass", "drums", "other"), "bass")])
def test_every_valid_answer_reads_back_as_valid(stems, anchor):
    answers = valid_answers(stems, anchor)
    assert len(answers) == 3 * (1 + 4 * (2 if len(stems) == 4 else 1))  # 3 wordings of each advice
    assert {advice_validity(parse_advice(a), stems, anchor) for a in answers} == {"valid"}


@pytest.mark.parametrize(
    "text, stems, anchor, expected",
    [
        (DRUMS_LOUD, STEMS, "vocals", "valid"),
        ("The mix is well balanced. No gain change is needed.", STEMS, "vocals", "valid"),
        ("The vocals are a little too quiet. Increase the vocals by 3 to 6 dB.", STEMS, "bass", "valid"),
        (DRUMS_LOUD, STEMS, "drums", "impossible"),  # the anchor
        (DRUMS_LOUD, ("bass", "other", "vocals"), "vocals", "impossible"),  # not in the mix
        ("The drums are far too loud. Reduce the drums by 4 to 8 dB.", STEMS, "vocals", "impossible"),  # no such range
        ("The drums are far too loud. Reduce the drums by 6 dB.", STEMS, "vocals", "impossible"),
        ("The drums are far too loud.", STEMS, "vocals", "incomplete"),  # no amount
        ("Reduce it by 3 to 6 dB.", STEMS, "vocals", "incomplete"),  # no stem
        ("", STEMS, "vocals", "unparseable"),
        ("dB dB the the the", STEMS, "vocals", "unparseable"),
    ],
)
def test_advice_validity_of_texts(text, stems, anchor, expected):
    assert advice_validity(parse_advice(text), stems, anchor) == expected


@pytest.mark.parametrize(
    "parsed, expected",
    [
        ({"stem": "other", "direction": "decrease", "min_db": 3.0, "max_db": 6.0}, "impossible"),
        ({"stem": None, "direction": "none", "min_db": 3.0, "max_db": 6.0}, "impossible"),
        ({"stem": "bass", "direction": "increase", "min_db": 6.0, "max_db": 12.0}, "valid"),
        ({"stem": "bass", "direction": None, "min_db": 6.0, "max_db": 12.0}, "unparseable"),
    ],
)
def test_advice_validity_of_parsed_dicts(parsed, expected):
    assert advice_validity(parsed, STEMS, "vocals") == expected


def test_ranked_decoding_picks_the_advice_with_the_most_probability_over_its_wordings(tiny):
    """Brute force: score every valid answer with a full forward pass of prompt + answer, group by advice."""
    from mixingbuddy.evaluation.ranked import rank_advice

    model, processor = tiny
    rows = [(STEMS, "vocals"), (("bass", "drums", "other"), "bass")]
    prompts = [processor.apply_chat_template(processor.build_conversation(a, s, template=i), add_generation_prompt=True)
               for i, (s, a) in enumerate(rows)]
    clips = [np.random.default_rng(i).standard_normal(240000).astype(np.float32) * 0.1 for i in range(2)]
    inputs = processor(text=prompts, audio=clips, sampling_rate=24000)
    chosen = rank_advice(model, processor, inputs, rows)
    for i, ((stems, anchor), answer) in enumerate(zip(rows, chosen)):
        answers = valid_answers(stems, anchor)
        assert answer in answers
        single = processor(text=prompts[i], audio=clips[i], sampling_rate=24000)
        n = single["input_ids"].shape[1]
        scores = []
        with torch.no_grad():
            for a in answers:
                ids = processor.tokenizer(a + "<|im_end|>", add_special_tokens=False)["input_ids"]
                full = torch.cat([single["input_ids"], torch.tensor([ids])], dim=1)
                logits = model(input_ids=full, input_values=single["input_values"]).logits[0, n - 1 : -1]
                scores.append(logits.log_softmax(-1).gather(-1, torch.tensor(ids)[:, None]).sum().item())
        mass = {}
        for a, score in zip(answers, scores):
            key = (parse_advice(a)["stem"], parse_advice(a)["direction"])
            mass[key] = np.logaddexp(mass.get(key, -np.inf), score)
        picked = parse_advice(answer)
        assert (picked["stem"], picked["direction"]) == max(mass, key=mass.get)


def test_ranked_decoding_in_chunks_scores_and_picks_as_in_one_go(tiny):
    from mixingbuddy.evaluation.ranked import rank_advice, score_answers

    model, processor = tiny
    rows = [(STEMS, "vocals"), (("bass", "drums", "other"), "bass"), (STEMS, "drums")]
    prompts = [processor.apply_chat_template(processor.build_conversation(a, s, template=i), add_generation_prompt=True)
               for i, (s, a) in enumerate(rows)]
    inputs = processor(text=prompts, audio=make_clips(3), sampling_rate=24000)
    answers, whole = score_answers(model, processor, inputs, rows, chunk_size=10_000)
    assert [len(a) for a in answers] == [27, 15, 27]  # a mix without vocals, anchor bass: only the drums
    for chunk_size in (1, 7, None):
        _, chunked = score_answers(model, processor, inputs, rows, chunk_size=chunk_size)
        for a, b in zip(chunked, whole):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert rank_advice(model, processor, inputs, rows, chunk_size=7) == rank_advice(model, processor, inputs, rows)
