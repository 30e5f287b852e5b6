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
    assert format_response("loud", "drums", 0) == "The drums are a little too loud. Reduce the drums by 3 to 6 dB."
    assert format_response("very_quiet", "bass", 1) == "Bass is buried in the mix. Raise the bass by 6 to 12 dB."
    assert format_response("quiet", "vocals", 5) == "Vocals are a touch too low. Add 3 to 6 dB to the vocals."


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
