"""The task's vocabulary: stems, flaw categories, the instruction and response templates, and reading advice back.

A file of the model repository with no dependencies beyond the standard library, so the data set, the scorer, the
decoders and the processor share one definition of every word the model hears and says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypedDict

STEMS = ("bass", "drums", "other", "vocals")
TARGET_STEMS = ("bass", "drums", "vocals")  # `other` is always in the mix but never target nor anchor
PLURAL_STEMS = frozenset({"drums", "vocals"})

AUDIO_TOKEN = "<|AUDIO|>"  # the placeholder the processor expands to the audio embeddings
START_OF_TURN = "<|im_start|>"  # ChatML's turn opener
END_OF_TURN = "<|im_end|>"  # ChatML's end of a turn: closes every training response; generation's eos


@dataclass(frozen=True)
class ErrorCategory:
    """A flaw category: the range of gain applied to the target stem, in dB (signed)."""

    name: str
    min_gain_db: float
    max_gain_db: float

    @property
    def direction(self) -> str:
        """The correction the advice asks for: the opposite of the flaw."""
        if self.max_gain_db < 0:
            return "increase"
        if self.min_gain_db > 0:
            return "decrease"
        return "none"

    @property
    def correction_db(self) -> tuple[float, float]:
        """(smallest, largest) size of the correction the advice names, in dB."""
        low, high = sorted((abs(self.min_gain_db), abs(self.max_gain_db)))
        return low, high


CATEGORIES = {
    c.name: c
    for c in (
        ErrorCategory("very_quiet", -12.0, -6.0),
        ErrorCategory("quiet", -6.0, -3.0),
        ErrorCategory("no_error", 0.0, 0.0),
        ErrorCategory("loud", 3.0, 6.0),
        ErrorCategory("very_loud", 6.0, 12.0),
    )
}

# What the model hears (`MixingBuddyConfig.audio_inputs`): the clips of a prompt, each named by what it holds, the mix
# (`MIX_CLIP`) or one stem. With several clips each placeholder follows a label: "Mix: ", "Reference (vocals): ",
# "Bass: ".
AUDIO_INPUTS = ("mix", "mix+anchor", "stems")
MIX_CLIP = "mix"
ANCHOR_CLIP = "anchor"  # another name for the reference stem's clip, where clips are given by name
REFERENCE_LABEL = "Reference ({anchor})"
_REFERENCE_LABEL = re.compile(r"Reference \((\w+)\)")


def audio_clips(audio_inputs: str, anchor: str) -> list[str]:
    """The clips a prompt carries under an `audio_inputs` setting, in order, each `MIX_CLIP` or a stem name.

    - "mix" (the paper): the mix alone;
    - "mix+anchor": the mix, then the anchor stem alone;
    - "stems": the anchor, the other stems in `STEMS` order, then the mix. Every stem, so that every prompt of the
      setting has the same clips in the same places (a stem that is absent or pauses is a silent clip); the mix last,
      because the flaw to judge is the mix's and it shows what the stems do together (masking), at one more clip.
    """
    if audio_inputs not in AUDIO_INPUTS:
        raise ValueError(f"audio_inputs must be one of {AUDIO_INPUTS}, got {audio_inputs!r}.")
    if audio_inputs == "mix":
        return [MIX_CLIP]
    if audio_inputs == "mix+anchor":
        return [MIX_CLIP, anchor]
    return [anchor, *(stem for stem in STEMS if stem != anchor), MIX_CLIP]


def num_audio_clips(audio_inputs: str) -> int:
    """Clips per prompt under an `audio_inputs` setting: 1, 2 or 5."""
    return len(audio_clips(audio_inputs, TARGET_STEMS[0]))


def mix_clip_index(audio_inputs: str) -> int:
    """Where the mix sits among a prompt's clips under an `audio_inputs` setting (the same for every anchor)."""
    return audio_clips(audio_inputs, TARGET_STEMS[0]).index(MIX_CLIP)


def clip_label(clip: str, anchor: str) -> str:
    """The label in front of a clip's placeholder: "Mix", "Reference (vocals)" for the anchor, "Bass"."""
    return REFERENCE_LABEL.format(anchor=anchor) if clip == anchor else clip.capitalize()


def read_clip_label(label: str) -> tuple[str, bool]:
    """(clip, whether it is the reference) of a `clip_label`; a placeholder without a label holds the mix."""
    if match := _REFERENCE_LABEL.fullmatch(label):
        return match.group(1), True
    return label.lower() or MIX_CLIP, False


SYSTEM_PROMPT = (
    "You are MixingBuddy, an assistant for music mixing engineers. You listen to a mix and give "
    "precise, concise advice about the gain balance of its stems."
)

# Placeholders: {stems} (e.g. "bass, drums, other and vocals") and {anchor}.
INSTRUCTION_TEMPLATES = (
    "This mix contains {stems}. Keep the {anchor} as the reference level. Is any stem too loud or too quiet?",
    "Listen to this mix of {stems}. Taking the {anchor} as correctly balanced, which stem needs a gain change, and by how much?",
    "The stems in this mix are {stems}. Using the {anchor} as the anchor, tell me if the gain balance needs fixing.",
    "Here is a ten-second excerpt with {stems}. The {anchor} level is correct. What gain adjustment would you make?",
    "Check the balance of this mix ({stems}). Judge every level relative to the {anchor}.",
    "I mixed {stems}. Assume the {anchor} sits where it should. Does anything need to be turned up or down?",
    "Please review the levels in this mix of {stems}, relative to the {anchor}, and suggest a gain correction if one is needed.",
    "With the {anchor} as the reference, is any of the other stems in this mix of {stems} out of balance?",
    "This excerpt has {stems}. Do not change the {anchor}. Which stem, if any, should I adjust?",
    "Give me gain-balance feedback on this mix of {stems}, keeping the {anchor} fixed.",
)

# A data-set response first restates the anchor and names the stems the advice may change (`REFERENCE_SENTENCE`: "With
# the vocals as the reference, I compared the bass and the drums."), then gives its decision, worded one way per
# direction with the stem first ("The bass is too quiet: raise it by 3 to 6 dB."), then one of three reasons. So the
# decision sentence is the whole advice and greedy decoding commits to it at its first words instead of splitting its
# probability over wordings that share no first words; and the stem it names follows a list of the stems it may be,
# which the model copies from, rather than the anchor, which it must not repeat (measured on the demo, seeds 0-2:
# greedy named the anchor in 6-9 % of answers without a restated anchor, 2-4 % with the anchor alone restated,
# 0.2-0.5 % with the list). The categories and their ranges are the paper's. Placeholders: {stem}, {is} ("is"/"are")
# and {it} ("it"/"them") to agree with the stem, {min_db}, {max_db}; {anchor} and {candidates} in the reference
# sentence.
REFERENCE_SENTENCE = "With the {anchor} as the reference, I compared {candidates}. "
DECISIONS = {
    "increase": "The {stem} {is} too quiet: raise {it} by {min_db} to {max_db} dB.",
    "decrease": "The {stem} {is} too loud: lower {it} by {min_db} to {max_db} dB.",
    "none": "The mix is balanced: leave the levels as they are.",
}
REASONS = {
    "very_quiet": ("The {stem} {is} buried in the mix.", "I can barely hear the {stem}.", "The {stem} {is} lost behind the other stems."),
    "quiet": ("The {stem} {is} slightly low in the mix.", "The {stem} could be a bit louder.", "The {stem} {is} a little too far back."),
    "no_error": ("No stem needs a gain change.", "Every stem sits at a suitable level.", "The stems sit well together."),
    "loud": ("The {stem} {is} slightly too prominent.", "The {stem} could be a bit quieter.", "The {stem} {is} a little too far forward."),
    "very_loud": ("The {stem} {is} overpowering the mix.", "The {stem} {is} drowning out the rest.", "The {stem} {is} dominating the mix."),
}
RESPONSE_TEMPLATES = {
    name: tuple(f"{DECISIONS[category.direction]} {reason}" for reason in REASONS[name]) for name, category in CATEGORIES.items()
}


# The "label" auxiliary head's classes: 0 = no_error, then (target stem, flawed category) pairs.
FLAWED_CATEGORIES = tuple(name for name in CATEGORIES if name != "no_error")
ADVICE_CLASSES = ("no_error",) + tuple(f"{stem}:{cat}" for stem in TARGET_STEMS for cat in FLAWED_CATEGORIES)


def advice_class(target_stem: str, category: str) -> int:
    """Index of the (target stem, category) pair in `ADVICE_CLASSES` (0 for a balanced mix)."""
    return 0 if category == "no_error" else ADVICE_CLASSES.index(f"{target_stem}:{category}")


def advice_stems(stems_present, anchor: str | None) -> list[str]:
    """Stems an advice may ask to change: target stems present in the mix, except the anchor."""
    return [stem for stem in TARGET_STEMS if stem in stems_present and stem != anchor]


def advice_validity(advice: dict, stems_present=STEMS, anchor: str | None = None) -> str:
    """Judge a `parse_advice` dict against its instruction: "valid", "incomplete", "impossible" or "unparseable".

    Unparseable: no direction can be read. Impossible: what no correct answer could say — it asks to change the anchor,
    a stem that is not in the mix or is not a target stem, names a dB range that is not a category's correction range
    for its direction, or says the mix is balanced while naming a stem or an amount. Incomplete: a direction without a
    stem or without an amount. Valid: a balanced verdict, or a direction, a changeable stem and a correction range.
    """
    direction, stem = advice["direction"], advice["stem"]
    amount = (advice["min_db"], advice["max_db"])
    if direction is None:
        return "unparseable"
    if direction == "none":
        return "valid" if stem is None and amount == (None, None) else "impossible"
    if stem is not None and stem not in advice_stems(stems_present, anchor):
        return "impossible"
    if amount != (None, None) and amount not in {c.correction_db for c in CATEGORIES.values() if c.direction == direction}:
        return "impossible"
    return "incomplete" if stem is None or amount == (None, None) else "valid"


def format_db(value: float) -> str:
    """3.0 -> "3", 4.5 -> "4.5"."""
    return f"{value:g}"


def describe_stems(stems) -> str:
    """("bass", "drums", "vocals") -> "bass, drums and vocals"."""
    stems = list(stems)
    return stems[0] if len(stems) == 1 else ", ".join(stems[:-1]) + " and " + stems[-1]


def validate_stems(stems, anchor: str) -> list[str]:
    """Check stem names and the anchor (a target stem among them); return the stems in canonical order."""
    unknown = [s for s in stems if s not in STEMS]
    if unknown:
        raise ValueError(f"Unknown stem name(s) {unknown}; expected stems from {list(STEMS)}.")
    if anchor not in TARGET_STEMS:
        raise ValueError(f"The anchor must be one of {list(TARGET_STEMS)}, got {anchor!r}.")
    if anchor not in stems:
        raise ValueError(f"Anchor stem {anchor!r} is not among the stems present {list(stems)}.")
    return [s for s in STEMS if s in stems]


def format_instruction(anchor: str, stems=STEMS, template: int = 0) -> str:
    """The user instruction naming the stems present and the anchor (`template` indexes `INSTRUCTION_TEMPLATES`)."""
    stems = validate_stems(stems, anchor)
    return INSTRUCTION_TEMPLATES[template].format(stems=describe_stems(stems), anchor=anchor)


def format_response(
    category: str, target_stem: str | None = None, template: int = 0, anchor: str | None = None, stems=STEMS
) -> str:
    """The ground-truth advice for a flaw `category` on `target_stem` (`template` indexes its `RESPONSE_TEMPLATES`);
    with an `anchor`, the advice opens with `REFERENCE_SENTENCE`: the anchor and the stems of `stems` it may change."""
    if category not in CATEGORIES:
        raise ValueError(f"Unknown error category {category!r}; expected one of {list(CATEGORIES)}.")
    low, high = CATEGORIES[category].correction_db
    stem = target_stem or ""
    text = RESPONSE_TEMPLATES[category][template].format(
        stem=stem,
        **{"is": "are" if stem in PLURAL_STEMS else "is", "it": "them" if stem in PLURAL_STEMS else "it"},
        min_db=format_db(low),
        max_db=format_db(high),
    )
    return reference_sentence(anchor, stems) + text if anchor else text


def reference_sentence(anchor: str, stems=STEMS) -> str:
    """`REFERENCE_SENTENCE` for an anchor among `stems`: "With the vocals as the reference, I compared the bass and the
    drums. " """
    compared = [f"the {stem}" for stem in advice_stems(validate_stems(stems, anchor), anchor)]
    candidates = describe_stems(compared) if compared else "no other stem"
    return REFERENCE_SENTENCE.format(anchor=anchor, candidates=candidates)


def valid_answers(stems_present, anchor: str) -> list[str]:
    """Every answer a correct model could give: each response template filled in for every stem the advice may change
    (`advice_stems`) and every category; `advice_validity` judges each of them "valid"."""
    stems = advice_stems(validate_stems(stems_present, anchor), anchor)
    answers = []
    for name, category in CATEGORIES.items():
        targets = [None] if category.direction == "none" else stems
        answers += [
            format_response(name, stem, i, anchor, stems_present) for stem in targets for i in range(len(RESPONSE_TEMPLATES[name]))
        ]
    return answers

# ---------------------------------------------------------------------------------------------
# Reading advice back: parse_advice(text) -> {"stem", "direction", "min_db", "max_db"}
# ---------------------------------------------------------------------------------------------

_STEM_WORDS = {
    **dict.fromkeys(("bass", "basses", "bassline", "basslines"), "bass"),
    **dict.fromkeys(("drum", "drums", "percussion", "kit"), "drums"),
    **dict.fromkeys(("vocal", "vocals", "voice", "voices", "vox", "singer", "singers", "singing", "vocalist"), "vocals"),
}
_REFERENCE_WORDS = frozenset({"than", "with", "against", "versus", "vs", "to", "relative"})
_ACTION_CUES = {
    **dict.fromkeys(("increase", "raise", "boost", "lift", "add", "amplify"), "increase"),
    **dict.fromkeys(("reduce", "lower", "cut", "decrease", "attenuate", "trim", "drop", "tame", "lessen", "duck", "quieten"), "decrease"),
}
_STATE_CUES = {
    **dict.fromkeys(
        ("quiet", "soft", "low", "weak", "faint", "buried", "lost", "hidden", "inaudible", "under-mixed",
         "undermixed", "drowned", "masked", "louder", "more", "barely", "hardly"),
        "increase",
    ),
    **dict.fromkeys(
        ("loud", "hot", "high", "prominent", "overpowering", "overpowers", "dominating", "dominates", "dominant",
         "drowning", "over-mixed", "overmixed", "overbearing", "overwhelming", "harsh", "quieter", "less", "forward"),
        "decrease",
    ),
}
_PHRASAL_VERBS = frozenset(
    {"turn", "bring", "push", "pull", "crank", "nudge", "pump", "dial", "move", "take", "ease", "roll", "back", "come", "go", "bump"}
)
_PARTICLES = {"up": "increase", "down": "decrease", "off": "decrease", "back": "decrease"}
_CLAUSE_BREAKS = frozenset({".", ",", ";", ":", "!", "?", "but", "however", "though", "although"})
_BALANCED = re.compile(
    r"\b(?:balanced|unchanged|no (?:\w+ )?(?:change|changes|adjustment|adjustments|correction|corrections)"
    r"|nothing (?:to|needs?)|leave (?:it|them|the levels|everything|every|all|the mix)|as (?:it|they) (?:is|are)"
    r"|sits? well|(?:is|are|sounds?|looks?) (?:fine|good|right|correct))\b"
)
_DB_RANGE = re.compile(
    r"(?:between\s+)?(\d+(?:\.\d+)?)\s*(?:db\s*)?(?:to|-|–|—|and)\s*(\d+(?:\.\d+)?)\s*(?:db|decibels?)\b"
)
_DB_SINGLE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:db|decibels?)\b")
_TOKEN = re.compile(r"[a-z]+(?:[-'][a-z]+)*|\d+(?:\.\d+)?|[.,;:!?]")
_OPPOSITE = {"increase": "decrease", "decrease": "increase"}


def _is_negator(token: str) -> bool:
    return token in {"not", "no", "never", "nothing", "none", "neither", "nor", "cannot"} or token.endswith("n't")


def _direction_cues(tokens: list[str]) -> tuple[list[tuple[int, str, int]], int]:
    """Find level cues: ([(position, direction, weight)], number of "balanced" votes from negated cues)."""
    cues, negated_votes, negated = [], 0, False
    for i, token in enumerate(tokens):
        if token in _CLAUSE_BREAKS:
            negated = False
            continue
        if _is_negator(token):
            negated = True
            continue
        previous = tokens[i - 1] if i else ""
        if token in _ACTION_CUES:
            direction, weight = _ACTION_CUES[token], 2
        elif token in _PARTICLES and any(t in _PHRASAL_VERBS for t in tokens[max(0, i - 4) : i]):
            if token == "back" and previous in {"far", "too", "way"}:
                direction, weight = "increase", 1  # "sits too far back"
            else:
                direction, weight = _PARTICLES[token], 2
        elif token in _STATE_CUES and not (token == "more" and tokens[i + 1 : i + 2] == ["than"]):
            direction, weight = _STATE_CUES[token], 1
        elif token == "back" and previous in {"far", "too", "way"}:
            direction, weight = "increase", 1
        else:
            continue
        if negated:
            clause_rest = tokens[i + 1 : next((j for j in range(i + 1, len(tokens)) if tokens[j] in _CLAUSE_BREAKS), len(tokens))]
            if weight == 1 and "enough" in clause_rest:  # "not loud enough"
                cues.append((i, _OPPOSITE[direction], weight))
            else:  # "not too loud", "don't cut the bass"
                negated_votes += 1
            continue
        cues.append((i, direction, weight))
    return cues, negated_votes


def _stem_mentions(tokens: list[str]) -> list[tuple[int, str]]:
    """Stem names in the text, leaving out references such as "compared with the vocals"."""
    mentions = []
    for i, token in enumerate(tokens):
        if token in _STEM_WORDS and not _REFERENCE_WORDS.intersection(tokens[max(0, i - 2) : i]):
            mentions.append((i, _STEM_WORDS[token]))
    return mentions


def _db_range(text: str) -> tuple[float | None, float | None]:
    if match := _DB_RANGE.search(text):
        low, high = sorted((float(match.group(1)), float(match.group(2))))
        return low, high
    if match := _DB_SINGLE.search(text):
        return float(match.group(1)), float(match.group(1))
    return None, None


class Advice(TypedDict):
    """Mixing advice read back into fields (`parse_advice`); a field that cannot be read is `None`."""

    stem: str | None
    direction: Literal["increase", "decrease", "none"] | None
    min_db: float | None
    max_db: float | None


def parse_advice(text: str) -> Advice:
    """Read mixing advice back into fields.

    Returns an [`Advice`]: `{"stem": str | None, "direction": "increase" | "decrease" | "none" | None, "min_db": float |
    None, "max_db": float | None}`. Words are matched whole (so "louder" is not "loud"), negations are handled ("not loud
    enough" asks for more level; "nothing is too loud" says the mix is balanced) and the stem is the one named closest
    to the winning advice. Fields that cannot be read are `None`.
    """
    normalized = (text or "").lower().replace("’", "'")
    tokens = _TOKEN.findall(normalized)
    cues, negated_votes = _direction_cues(tokens)
    score = {"increase": 0, "decrease": 0}
    for _, direction, weight in cues:
        score[direction] += weight
    balanced_votes = negated_votes + len(_BALANCED.findall(normalized))

    stem = None
    if score["increase"] != score["decrease"]:
        direction = max(score, key=score.get)
        winning = [position for position, d, _ in cues if d == direction]
        mentions = _stem_mentions(tokens)
        if mentions:
            stem = min(mentions, key=lambda m: min(abs(m[0] - p) for p in winning))[1]
    elif score["increase"] == 0 and balanced_votes:
        direction = "none"
    else:
        direction = None
    min_db, max_db = _db_range(normalized)
    return Advice(stem=stem, direction=direction, min_db=min_db, max_db=max_db)



__all__ = [
    "ADVICE_CLASSES",
    "ANCHOR_CLIP",
    "AUDIO_INPUTS",
    "AUDIO_TOKEN",
    "CATEGORIES",
    "DECISIONS",
    "END_OF_TURN",
    "FLAWED_CATEGORIES",
    "INSTRUCTION_TEMPLATES",
    "MIX_CLIP",
    "REASONS",
    "REFERENCE_LABEL",
    "REFERENCE_SENTENCE",
    "RESPONSE_TEMPLATES",
    "STEMS",
    "START_OF_TURN",
    "SYSTEM_PROMPT",
    "TARGET_STEMS",
    "Advice",
    "ErrorCategory",
    "advice_class",
    "advice_stems",
    "advice_validity",
    "audio_clips",
    "clip_label",
    "describe_stems",
    "format_instruction",
    "format_response",
    "num_audio_clips",
    "parse_advice",
    "read_clip_label",
    "reference_sentence",
    "valid_answers",
    "validate_stems",
]
