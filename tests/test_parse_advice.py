"""parse_advice reads every response template exactly, and common paraphrases, with whole words and negations."""

import pytest

from mixingbuddy.hub.vocabulary_mixingbuddy import (
    CATEGORIES,
    RESPONSE_TEMPLATES,
    STEMS,
    TARGET_STEMS,
    format_response,
    parse_advice,
    reference_sentence,
)


@pytest.mark.parametrize("category", list(RESPONSE_TEMPLATES))
def test_every_response_template_parses_exactly(category):
    info = CATEGORIES[category]
    low, high = info.correction_db
    for template in range(len(RESPONSE_TEMPLATES[category])):
        for stem, anchor in [(stem, anchor) for stem in TARGET_STEMS for anchor in (None, *TARGET_STEMS) if anchor != stem]:
            text = format_response(category, stem, template, anchor)  # neither the anchor nor the list is read as the stem
            if category == "no_error":
                expected = {"stem": None, "direction": "none", "min_db": None, "max_db": None}
            else:
                expected = {"stem": stem, "direction": info.direction, "min_db": low, "max_db": high}
            assert parse_advice(text) == expected, text


def test_templates_are_grammatical():
    assert format_response("loud", "drums", 0) == "The drums are too loud: lower them by 3 to 6 dB. The drums are slightly too prominent."
    assert format_response("very_quiet", "bass", 1, "drums") == (
        "With the drums as the reference, I compared the bass and the vocals. The bass is too quiet: raise it by 6 to 12 dB. "
        "I can barely hear the bass."
    )
    assert format_response("no_error", None, 2, "vocals") == (
        "With the vocals as the reference, I compared the bass and the drums. The mix is balanced: leave the levels as "
        "they are. The stems sit well together."
    )
    assert format_response("loud", "drums", 0, "vocals", ["drums", "other", "vocals"]).startswith(
        "With the vocals as the reference, I compared the drums. The drums are too loud"
    )
    assert reference_sentence("vocals", ["other", "vocals"]) == "With the vocals as the reference, I compared no other stem. "


def test_the_decision_sentence_of_a_response_is_its_whole_advice():
    """Greedy decoding commits at the first tokens of the decision: every response for an anchor opens with the same
    reference sentence (the anchor and the stems that may change), then every wording of an advice goes on with the
    same sentence — the stem and the decision — and different advice differs in it."""
    for anchor in TARGET_STEMS:
        decisions = {}
        for category in CATEGORIES:
            for stem in TARGET_STEMS if category != "no_error" else [None]:
                if stem == anchor:
                    continue
                texts = [format_response(category, stem, i, anchor) for i in range(len(RESPONSE_TEMPLATES[category]))]
                assert all(text.startswith(reference_sentence(anchor, STEMS)) for text in texts)
                sentences = {text.removeprefix(reference_sentence(anchor, STEMS)).split(". ")[0] for text in texts}
                assert len(sentences) == 1, sentences
                decisions[(category, stem)] = sentences.pop()
        assert len(set(decisions.values())) == len(decisions) == 1 + 4 * (len(TARGET_STEMS) - 1)
        assert all(anchor not in decision for decision in decisions.values())


@pytest.mark.parametrize(
    "text, stem, direction, min_db, max_db",
    [
        ("Bring the vocals up.", "vocals", "increase", None, None),
        ("The bass is overpowering.", "bass", "decrease", None, None),
        ("Pull the drums down 3-6 dB.", "drums", "decrease", 3.0, 6.0),
        ("Everything sits well, leave it.", None, "none", None, None),
        ("The vocal isn't loud enough; raise it between 6 and 12 dB.", "vocals", "increase", 6.0, 12.0),
        ("Nothing is too loud or too quiet.", None, "none", None, None),
        ("The drums could be louder.", "drums", "increase", None, None),  # "louder" is not "loud"
        ("The drums could be a bit quieter.", "drums", "decrease", None, None),
        ("Leave the vocals alone and cut the drums by 4 dB.", "drums", "decrease", 4.0, 4.0),
        ("Compared with the vocals, the bass is too hot.", "bass", "decrease", None, None),
        ("The drum is too quiet relative to the bass.", "drums", "increase", None, None),
        ("Turn the singer down by 3 to 6 decibels.", "vocals", "decrease", 3.0, 6.0),
        ("The vocals need to come up by 3 to 6 dB.", "vocals", "increase", 3.0, 6.0),
        ("The basses are buried.", "bass", "increase", None, None),
        ("Sounds great to me!", None, None, None, None),
        ("", None, None, None, None),
    ],
)
def test_paraphrases(text, stem, direction, min_db, max_db):
    assert parse_advice(text) == {"stem": stem, "direction": direction, "min_db": min_db, "max_db": max_db}


def test_whole_words_only():
    assert parse_advice("The drumsticks are loudest")["stem"] is None  # no stem word, no "loud" cue
    assert parse_advice("The bassoon is fine.")["stem"] is None
