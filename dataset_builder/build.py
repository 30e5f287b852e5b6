"""`build_dataset`: run the builder and write a Hub-ready folder (Parquet shards + dataset card), atomically."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from mixingbuddy.files import atomic_folder, push_folder_to_hub
from mixingbuddy.hub.vocabulary_mixingbuddy import CATEGORIES, TARGET_STEMS
from mixingbuddy.markdown import markdown_table

from .builder import MixingBuddyGain
from .corpus import MUSDB_VALIDATION_TRACKS, find_tracks
from .provenance import write_provenance


def build_dataset(
    stems_dir: str | Path,
    out_dir: str | Path,
    config: str = "expanded",
    *,
    seed: int = 0,
    num_proc: int | None = None,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    push_to_hub: str | None = None,
    **config_kwargs,
) -> dict:
    """Build the data set from a MUSDB18HQ-layout folder into `out_dir` and return its statistics.

    `out_dir` gets `data/{train,validation,test}-00000-of-00001.parquet`, a `README.md` card and a marker recording the
    stems folder and a fingerprint of every stem file used (`provenance`), so `load_dataset(out_dir)` returns the
    `DatasetDict` and training and evaluation can check the audio. Everything is written to a temporary folder beside
    `out_dir` and renamed into place, so a failure leaves nothing behind; `overwrite` replaces only a data set that
    build-dataset wrote, never the stems folder or the current folder. `cache_dir` is the root of the stem cache;
    `config_kwargs` are other `MixingBuddyGainConfig` fields (gating thresholds, ...). With `push_to_hub`, the folder
    is then uploaded to that Hub dataset repository.
    """
    out = Path(out_dir).expanduser().resolve()
    with atomic_folder(out, overwrite=overwrite, kind="dataset", protected=[stems_dir]) as staging:
        builder = MixingBuddyGain(
            config_name=config,
            data_dir=str(stems_dir),
            cache_dir=str(staging / "arrow"),
            seed=seed,
            stem_cache_dir=None if cache_dir is None else str(cache_dir),
            **config_kwargs,
        )
        builder.download_and_prepare(num_proc=num_proc)
        splits = builder.as_dataset()
        for split in splits:
            splits[split].to_parquet(staging / "data" / f"{split}-00000-of-00001.parquet")
        stats = dataset_stats(builder, splits)
        dataset_card(stats).save(staging / "README.md")
        used = {track for split in splits.values() for track in split.unique("track")}
        write_provenance(staging, Path(stems_dir), find_tracks(stems_dir), used, config=config, seed=seed)
        del splits  # release the memory-mapped Arrow files before deleting them
        shutil.rmtree(staging / "arrow")
    if push_to_hub:
        push_folder_to_hub(out, push_to_hub, repo_type="dataset")
    return stats


def dataset_stats(builder: MixingBuddyGain, splits: datasets.DatasetDict) -> dict:
    """Counts per split: rows, categories, target and anchor stems, and the gating counts (a split without rows is
    left out of the data files but keeps its gating counts)."""
    stats = {
        "config": builder.config.name,
        "seed": builder.config.seed,
        "gating_thresholds": asdict(builder.config.gating),
    }
    stats["splits"] = {split: {"rows": 0, "gating": gating.to_dict()} for split, gating in builder.gating_stats.items()}
    for split, dataset in splits.items():
        stats["splits"][split] |= {
            "rows": dataset.num_rows,
            "categories": dict(sorted(Counter(dataset["error_category"]).items())),
            "target_stems": dict(sorted(Counter(dataset["target_stem"]).items())),
            "anchor_stems": dict(sorted(Counter(dataset["anchor_stem"]).items())),
        }
    return stats


def dataset_card(stats: dict) -> DatasetCard:
    """The data-set card (README.md): metadata, then the statistics.

    The splits are found from the file names (`data/<split>-*.parquet`). The card declares no `configs:` block on
    purpose: with one, `datasets` keys its cache by the folder's name and the config, not by the files, so two built
    folders of the same name would load each other's rows.
    """
    splits = stats["splits"]
    metadata = DatasetCardData(pretty_name="MixingBuddy gain balance", tags=["music", "audio", "mixing", "musdb18"])
    lines = [
        f"---\n{metadata.to_yaml()}\n---",
        "",
        f"# MixingBuddy gain-balance data set ({stats['config']})",
        "",
        (
            "Each row names a 10 s chunk of a multitrack song and a flaw: one target stem's gain changed by `gain_db`"
            " (uniform within its category's range), an anchor stem named in the instruction, and the advice that"
            " fixes the flaw. Rows hold metadata only; render the flawed mix from the stems with"
            " `dataset_builder.render_flawed_mix(row, stems_dir)`."
        ),
        "",
        f"- Config: `{stats['config']}`; seed: {stats['seed']}.",
        (
            f"- Validation: MUSDB's {len(MUSDB_VALIDATION_TRACKS)} standard validation tracks when present, otherwise"
            " a seeded fraction of the train tracks; no track is in two splits."
        ),
        "- Gating: " + ", ".join(f"{k} = {v}" for k, v in stats["gating_thresholds"].items()) + ".",
        "",
        "## Rows",
        "",
        markdown_table(
            ["split", "rows", *CATEGORIES],
            [
                [split, s["rows"], *(s.get("categories", {}).get(c, 0) for c in CATEGORIES)]
                for split, s in splits.items()
            ],
        ),
        "",
        "## Target and anchor stems",
        "",
        markdown_table(
            ["split", *(f"target {t}" for t in TARGET_STEMS), *(f"anchor {t}" for t in TARGET_STEMS)],
            [
                [split, *(s.get(f"{role}_stems", {}).get(t, 0) for role in ("target", "anchor") for t in TARGET_STEMS)]
                for split, s in splits.items()
            ],
        ),
        "",
        "## Gating (10 s chunks; a gated-out chunk counts under every criterion it fails)",
        "",
        markdown_table(
            ["split", "chunks", "kept", "gated out", "quiet mixture", "quiet stem", "too few active frames",
             "tracks shorter than a chunk"],
            [
                [
                    split,
                    *(
                        s["gating"][k]
                        for k in (
                            "chunks", "kept", "gated_out", "quiet_mixture", "quiet_stem", "too_few_active_frames",
                            "short_tracks",
                        )
                    ),
                ]
                for split, s in splits.items()
            ],
        ),
        "",
    ]
    return DatasetCard("\n".join(lines))
