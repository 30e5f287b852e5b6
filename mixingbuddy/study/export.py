"""`mixingbuddy study export`: the study's ratings, joined with what each item was, as a `datasets` Parquet folder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from ..files import atomic_folder, push_folder_to_hub
from ..markdown import markdown_table
from . import CRITERIA, load_study
from .database import DATABASE_FILE, StudyDatabase

ITEM_FACTS = ("error_category", "target_stem", "anchor_stem", "gain_db", "track", "start_sec", "instruction")
FEATURES = datasets.Features({
    "participant": datasets.Value("string"),  # the code as the participant typed it
    "item_id": datasets.Value("string"),
    "skipped": datasets.Value("bool"),
    "system": datasets.Value("string"),  # model, second or reference; None on a skipped item
    "answer": datasets.Value("string"),
    "correct": datasets.Value("bool"),  # the parser's joint correctness of the answer
    **{name: datasets.Value("int8") for name in CRITERIA},
    "preferred": datasets.Value("string"),
    "comment": datasets.Value("string"),
    "submitted_at": datasets.Value("string"),
    "error_category": datasets.Value("string"),
    "target_stem": datasets.Value("string"),
    "anchor_stem": datasets.Value("string"),
    "gain_db": datasets.Value("float64"),
    "track": datasets.Value("string"),
    "start_sec": datasets.Value("float64"),
    "instruction": datasets.Value("string"),
})


def study_rows(study_dir: str | Path) -> tuple[dict, list[dict]]:
    """The study (`load_study`) and one row per rating (participant, item, system) and per skipped item, with the
    item's facts and the rated answer's text and parser correctness (the `FEATURES` columns)."""
    study = load_study(study_dir)
    path = Path(study_dir).expanduser() / DATABASE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: no participant has answered this study yet.")
    database = StudyDatabase(path)
    items = {item["item_id"]: item for item in study["items"]}
    rows = []
    ratings = {}
    for rating in database.ratings():
        ratings.setdefault((rating["participant"], rating["item_id"]), []).append(rating)
    for response in database.responses():
        item = items.get(response["item_id"])
        if item is None:
            raise ValueError(f"{path} holds answers to item {response['item_id']!r}, which {study_dir}/study.json "
                             "does not have: the database belongs to another study.")
        facts = {**{key: item[key] for key in ITEM_FACTS}, **{k: response[k] for k in ("participant", "item_id",
                 "skipped", "preferred", "comment", "submitted_at")}}
        answers = {answer["system"]: answer for answer in item["answers"]}
        if response["skipped"]:
            rows.append({**facts, "system": None, "answer": None, "correct": None, **dict.fromkeys(CRITERIA)})
        for rating in ratings.get((response["participant"], response["item_id"]), []):
            answer = answers.get(rating["system"], {})
            rows.append({**facts, "system": rating["system"], "answer": answer.get("text"),
                         "correct": answer.get("correct"), **{name: rating[name] for name in CRITERIA}})
    if not rows:
        raise ValueError(f"{path} holds no answers yet: nothing to export or report.")
    return study, rows


def ratings_card(study: dict, rows: list[dict]) -> DatasetCard:
    """The README of the exported folder: what the study was and how many answers it has."""
    rated = [row for row in rows if not row["skipped"]]
    per_system = Counter(row["system"] for row in rated)
    metadata = DatasetCardData(pretty_name="MixingBuddy listening study ratings", tags=["music", "mixing", "ratings"])
    lines = [
        f"---\n{metadata.to_yaml()}\n---",
        "",
        "# MixingBuddy listening study: ratings",
        "",
        "One row per answer rated by a participant (1-7 on "
        + ", ".join(f"*{name}* ({text[:-1].lower()})" for name, text in CRITERIA.items())
        + "), and one row per item a participant skipped (`skipped`, no system, no ratings). Participants are "
        "identified by the code they chose, kept as given. `correct` is the answer parser's joint correctness "
        "(stem and direction) of the rated answer; `preferred` the system chosen in an A/B comparison.",
        "",
        f"- Model: `{study['model']}`; second model: `{study.get('second_model')}`; reference answers shown: "
        f"{study.get('reference')}.",
        f"- Data set: `{study['dataset']}`, split `{study['split']}`, {len(study['items'])} items drawn with seed "
        f"{study['seed']}.",
        f"- Participants: {len({row['participant'] for row in rows})}; ratings: {len(rated)}; skipped: "
        f"{len(rows) - len(rated)}.",
        "",
        markdown_table(["system", "ratings"], [[system, n] for system, n in sorted(per_system.items())]),
        "",
    ]
    return DatasetCard("\n".join(lines))


def export_ratings(
    study_dir: str | Path, out: str | Path, push_to_hub: str | None = None, overwrite: bool = False
) -> Path:
    """Write the ratings (`study_rows`) to `out` as `data/ratings-00000-of-00001.parquet` with a `README.md` card, so
    that `datasets.load_dataset(out, split="ratings")` reads them; with `push_to_hub`, upload the folder to that Hub
    dataset repository. `overwrite` replaces only an earlier export. Returns the folder."""
    study, rows = study_rows(study_dir)
    out = Path(out).expanduser().resolve()
    with atomic_folder(out, overwrite, kind="study-ratings") as staging:
        table = datasets.Dataset.from_dict({key: [row[key] for row in rows] for key in FEATURES}, features=FEATURES)
        table.to_parquet(staging / "data" / "ratings-00000-of-00001.parquet")
        ratings_card(study, rows).save(staging / "README.md")
    if push_to_hub:
        push_folder_to_hub(out, push_to_hub, repo_type="dataset")
    return out
