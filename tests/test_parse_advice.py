"""parse_advice reads every response template exactly, and common paraphrases, with whole words and negations."""

import pytest

from vocabulary_mixingbuddy import CATEGORIES, RESPONSE_TEMPLATES, TARGET_STEMS, format_response, parse_advice


@pytest.mark.parametrize("category", list(RESPONSE_TEMPLATES))
def test_every_response_template_parses_exactly(category):
    info = CATEGORIES[category]
    low, high = info.correction_db
    for template in range(len(RESPONSE_TEMPLATES[category])):
        for stem in TARGET_STEMS:
            text = format_response(category, stem, template)
            if category == "no_error":
                expected = {"stem": None, "direction": "none", "min_db": None, "max_db": None}
            else:
                expected = {"stem": stem, "direction": info.direction, "min_db": low, "max_db": high}
            assert parse_advice(text) == expected, text


def test_templates_are_grammatical():
    assert format_response("loud", "drums", 0) == "Lower the drums by 3 to 6 dB. The drums are a little too loud."
    assert format_response("very_quiet", "bass", 1) == "Raise the bass by 6 to 12 dB. The bass is buried in the mix."
    assert format_response("no_error", None, 2) == "Leave the levels as they are. Every stem sits at a suitable level."


def test_the_first_sentence_of_a_response_is_its_whole_advice():
    """Greedy decoding commits at the first tokens: every wording of an advice starts with the same decision, and
    different advice differs in its first sentence, whose first word is the direction."""
    first = {}
    for category in CATEGORIES:
        for stem in TARGET_STEMS:
            sentences = {format_response(category, stem, i).split(". ")[0] for i in range(len(RESPONSE_TEMPLATES[category]))}
            assert len(sentences) == 1, sentences
            first[(category, None if category == "no_error" else stem)] = sentences.pop()
    assert len(set(first.values())) == len(first) == 1 + 4 * len(TARGET_STEMS)
    assert {text.split()[0] for text in first.values()} == {"Raise", "Lower", "Leave"}


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
