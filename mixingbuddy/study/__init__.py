"""The listening study: participants rate the model's advice on the proposal's three criteria.

A study folder (`mixingbuddy study prepare`, `prepare.py`) holds `study.json` (the items: a flawed mix, its anchor
and one or two answers), `audio/*.wav`, `consent.md` and `ratings.sqlite` (`database.py`). The web page serves it,
`export.py` writes the ratings as a data set and `report.py` summarises them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

CRITERIA = {
    "effectiveness": "How well the advice addresses the mixing problem you hear.",
    "actionability": "How clear and easy to carry out the advice is.",
    "conventions": "How well the advice follows established mixing practice.",
}
SCALE = range(1, 8)  # 1..7 on every criterion
SYSTEMS = ("model", "second", "reference")  # who wrote an answer: the model, a second model, the data set's response
STUDY_FILE = "study.json"
STUDY_FORMAT = 1
CONSENT_FILE = "consent.md"
CONSENT_MARKER = "<!-- mixingbuddy: edit this consent text before running the study -->"  # the template's first line
CONSENT_TEMPLATE = CONSENT_MARKER + """
# Taking part in this listening study

You will hear short music mixes and read advice on their gain balance, then rate each piece of advice on three
scales. It takes about 20 minutes; you may stop at any time and come back later with the same code.

- You enter a participant code only: we ask for no name, no e-mail and nothing else about you.
- Your ratings and comments are stored with your code and may be published with the study's results.
- Taking part is voluntary; to have your answers removed, tell the study's author your code.

Contact: (the study author's name and address)

By continuing you agree to take part.
"""

ITEM_KEYS = ("item_id", "audio", "track", "start_sec", "anchor_stem", "target_stem", "error_category", "gain_db",
             "instruction", "stems_present", "answers")


def _key(text: str) -> int:
    """A stable 64-bit integer from a string (Python's `hash` changes between runs)."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], 16)


def item_order(item_ids: list[str], code: str, seed: int) -> list[str]:
    """The order in which participant `code` gets the items: a permutation seeded by (`seed`, code), the same at every
    visit so that a participant resumes where they left off."""
    rng = np.random.default_rng([seed, _key(code)])
    return [item_ids[i] for i in rng.permutation(len(item_ids))]


def answer_order(n_answers: int, code: str, item_id: str, seed: int) -> list[int]:
    """The blind order in which participant `code` sees an item's answers (indices into its `answers`)."""
    rng = np.random.default_rng([seed, _key(code), _key(item_id)])
    return [int(i) for i in rng.permutation(n_answers)]


def load_study(study_dir: str | Path) -> dict:
    """`STUDY_DIR/study.json`, checked: format, seed and items with their fields, unique ids and 1 or 2 answers by
    known systems. Raises `ValueError` (or `FileNotFoundError`) naming the file."""
    path = Path(study_dir).expanduser() / STUDY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: prepare the study with `mixingbuddy study prepare`.")
    try:
        study = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not readable JSON: {err}") from None
    if not isinstance(study, dict) or study.get("format") != STUDY_FORMAT:
        raise ValueError(f"{path} is not a study of format {STUDY_FORMAT} (its 'format' field).")
    if not isinstance(study.get("seed"), int) or not isinstance(study.get("items"), list) or not study["items"]:
        raise ValueError(f"{path} needs an integer 'seed' and a non-empty list 'items'.")
    ids = set()
    for number, item in enumerate(study["items"]):
        missing = [key for key in ITEM_KEYS if not isinstance(item, dict) or key not in item]
        if missing:
            raise ValueError(f"{path}: item {number} lacks {', '.join(missing)}.")
        if item["item_id"] in ids:
            raise ValueError(f"{path}: item id {item['item_id']!r} appears twice.")
        ids.add(item["item_id"])
        answers = item["answers"] if isinstance(item["answers"], list) else []
        systems = {answer.get("system") for answer in answers if isinstance(answer, dict)}
        if not 1 <= len(answers) <= 2 or len(systems) != len(answers) or not systems <= set(SYSTEMS):
            raise ValueError(f"{path}: item {item['item_id']!r} needs 1 or 2 answers by distinct systems of {SYSTEMS}.")
    return study
