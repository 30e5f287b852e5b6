"""The LLM judge's rubric: the versioned prompt that shows a judge an answer beside the true flaw, and the strict
reading of the judge's reply.

The three criteria are the listening study's (`mixingbuddy.study.CRITERIA`), on the same 1–7 scale, so that the
judge's scores and the listeners' ratings can be compared. Change the wording and `RUBRIC_VERSION` changes with it:
every judgment records the version it was made with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..hub.vocabulary_mixingbuddy import CATEGORIES, STEMS, describe_stems
from ..study import CRITERIA as STUDY_CRITERIA
from .scoring import true_advice

RUBRIC_VERSION = 1
CRITERIA = tuple(STUDY_CRITERIA)  # the listening study's three, in its order

SYSTEM = (
    "You are an experienced mixing engineer who grades advice on the gain balance of music mixes. "
    "You follow the rubric exactly and reply only in the format it asks for."
)

RUBRIC = """MixingBuddy advice rubric, version {version}.

A musician asked an assistant about the gain balance of a mix. You know the mix's true flaw; the assistant only \
heard the mix. Rate the assistant's answer on three criteria, each a whole number from 1 (worst) to 7 (best):

- effectiveness: how well the advice fixes the true flaw. 7: it names the flawed stem, the right direction and an \
amount within the correction range (or, for a balanced mix, says no change is needed); 4: partly right, such as the \
right stem with the wrong amount; 1: it leaves the flaw as it is or makes the mix worse.
- actionability: how clear and easy to carry out the advice is. 7: one stem, one direction and an amount in dB that \
an engineer can apply at once; 4: the change is implied but vague; 1: nothing to act on.
- conventions: how well the advice follows established mixing practice. 7: it keeps the reference stem as it is, \
makes a plain gain move of a sensible size and calls a balanced mix balanced; 1: it changes the reference stem, \
contradicts itself or asks for extreme moves.

Judge what the answer says, not its length or style.

The instruction the assistant was given:
{instruction}

The true flaw: {flaw}
Stems in the mix: {stems}. The reference stem, which must stay as it is: the {anchor}.

The assistant's answer:
{answer}

Reply with exactly these three lines and nothing else, each N a whole number from 1 to 7:
effectiveness: N
actionability: N
conventions: N"""

REPLY = re.compile("\n".join(rf"{criterion}: ([1-7])" for criterion in CRITERIA))


def describe_flaw(target_stem: str | None, error_category: str) -> str:
    """The true flaw in words, with the correction that fixes it."""
    truth = true_advice(target_stem, error_category)
    if truth["direction"] == "none":
        return "none: the mix is balanced and no stem needs a gain change."
    category = CATEGORIES[error_category]
    loudness = "quiet" if truth["direction"] == "increase" else "loud"
    move = "raising" if truth["direction"] == "increase" else "lowering"
    low, high = category.correction_db
    return (f"the {target_stem} is {low:g} to {high:g} dB too {loudness}; the correction is {move} the {target_stem} "
            f"by {low:g} to {high:g} dB.")


def rubric_messages(record: Mapping) -> list[dict[str, str]]:
    """The chat the judge answers for one `predictions.jsonl` record: the rubric with the record's instruction, true
    flaw (`target_stem`, `error_category`), stems, anchor and answer (`generated`)."""
    text = RUBRIC.format(
        version=RUBRIC_VERSION,
        instruction=record["instruction"],
        flaw=describe_flaw(record["target_stem"], record["error_category"]),
        stems=describe_stems(record.get("stems_present") or STEMS),
        anchor=record["anchor_stem"],
        answer=record["generated"],
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def reply_prefix(scores: Mapping[str, int]) -> str:
    """The reply up to the score of the next criterion, given the `scores` of those before it (constrained scoring
    fills the scores in one criterion at a time)."""
    done = "".join(f"{criterion}: {scores[criterion]}\n" for criterion in CRITERIA[: len(scores)])
    return done + f"{CRITERIA[len(scores)]}: "


def parse_scores(reply: str) -> dict[str, int] | None:
    """{criterion: 1..7} from a reply in exactly the rubric's format (surrounding blank space aside), else None: an
    unreadable reply is never guessed."""
    match = REPLY.fullmatch(reply.strip())
    return None if match is None else dict(zip(CRITERIA, map(int, match.groups())))


def format_scores(scores: Mapping[str, int]) -> str:
    """The reply the rubric asks for, for these scores."""
    return "\n".join(f"{criterion}: {scores[criterion]}" for criterion in CRITERIA)
