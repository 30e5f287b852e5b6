"""`MixingBuddyGain`: the flawed-mix data set as a `datasets` builder over a MUSDB18HQ-layout folder.

`datasets` >= 4 refuses loading scripts, so the builder is instantiated directly:

```python
>>> builder = MixingBuddyGain(config_name="expanded", data_dir="musdb18hq", cache_dir="hf_cache")
>>> builder.download_and_prepare(num_proc=4)
>>> splits = builder.as_dataset()  # DatasetDict: train, validation, test
```

Rows hold metadata only; `render_flawed_mix(row, data_dir)` renders the audio from the stem cache.
"""

from __future__ import annotations

import functools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from .corpus import assign_splits, corpus_fingerprint, find_tracks
from .examples import expanded_rows, sampled_rows
from .gating import GatingStats, GatingThresholds, gate_chunks
from .stem_cache import StemCache, cache_root

logger = datasets.logging.get_logger(__name__)

FEATURES = datasets.Features(
    {
        "uid": datasets.Value("string"),
        "track": datasets.Value("string"),
        "chunk_index": datasets.Value("int32"),
        "start_sec": datasets.Value("float64"),
        "end_sec": datasets.Value("float64"),
        "stems_present": datasets.List(datasets.Value("string")),
        "anchor_stem": datasets.Value("string"),
        "target_stem": datasets.Value("string"),
        "error_category": datasets.Value("string"),
        "gain_db": datasets.Value("float64"),
        "min_gain_db": datasets.Value("float64"),
        "max_gain_db": datasets.Value("float64"),
        "instruction": datasets.Value("string"),
        "response": datasets.Value("string"),
        "instruction_template": datasets.Value("int32"),
        "response_template": datasets.Value("int32"),
    }
)


@dataclass
class MixingBuddyGainConfig(datasets.BuilderConfig):
    """Options of the flawed-mix data set (`data_dir` is the MUSDB18HQ-layout stems folder).

    Args:
        expanded: every gated chunk x 3 targets x 2 anchors x 5 categories (30 rows), or one random draw per chunk.
        seed: base seed of every random choice (validation tracks, gains, templates).
        sampling_rate, chunk_seconds: rate of the stem cache and length of the non-overlapping chunks.
        validation_fraction: share of train tracks held out when MUSDB's validation tracks are absent.
        stem_cache_dir: root of the stem cache (default `$MIXINGBUDDY_CACHE_DIR` or `~/.cache/mixingbuddy/stems`).
        mixture_min_rms_db, stem_min_rms_db, frame_active_rms_db, min_active_fraction: the gating thresholds.
    """

    expanded: bool = True
    seed: int = 0
    sampling_rate: int = 24000
    chunk_seconds: float = 10.0
    validation_fraction: float = 0.14
    stem_cache_dir: str | None = None
    mixture_min_rms_db: float = GatingThresholds.mixture_min_rms_db
    stem_min_rms_db: float = GatingThresholds.stem_min_rms_db
    frame_active_rms_db: float = GatingThresholds.frame_active_rms_db
    min_active_fraction: float = GatingThresholds.min_active_fraction

    @property
    def gating(self) -> GatingThresholds:
        return GatingThresholds(
            self.mixture_min_rms_db, self.stem_min_rms_db, self.frame_active_rms_db, self.min_active_fraction
        )


class MixingBuddyGain(datasets.GeneratorBasedBuilder):
    """Flawed-mix gain-balance examples from a MUSDB18HQ-layout folder (configs "expanded" and "sampled").

    Splits: train and test from the folder's `train/` and `test/`; validation holds whole tracks out of train.
    After a build (not a reuse of the `datasets` cache), `gating_stats` holds the gating counts per split.
    The `datasets` cache is keyed by the stem files' sizes and modification times, so changed stems are rebuilt.
    """

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = MixingBuddyGainConfig
    BUILDER_CONFIGS = [
        MixingBuddyGainConfig(name="expanded", expanded=True, description="Every gated chunk x 30 (the paper's data)."),
        MixingBuddyGainConfig(name="sampled", expanded=False, description="One random flaw per gated chunk."),
    ]
    DEFAULT_CONFIG_NAME = "expanded"

    def __init__(self, *args, data_dir: str | None = None, hash: str | None = None, **kwargs):
        if data_dir is not None and hash is None:
            tracks = find_tracks(data_dir)
            for track in tracks.values():
                track.validate()  # header checks: bad input fails here, before anything is written
            hash = corpus_fingerprint(tracks)
        kwargs.setdefault("dataset_name", "mixingbuddy_gain")
        super().__init__(*args, data_dir=data_dir, hash=hash, **kwargs)
        if not 0 <= self.config.validation_fraction < 1:  # checked here: datasets sets overrides without __post_init__
            raise ValueError(f"validation_fraction must lie in [0, 1), got {self.config.validation_fraction}.")
        self.gating_stats: dict[str, GatingStats] = {}

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="MixingBuddy: 10 s chunks of multitrack songs with one stem's gain changed, and advice texts.",
            features=FEATURES,
        )

    def _make_split_generators_kwargs(self, prepare_split_kwargs: dict) -> dict:
        return {"num_proc": prepare_split_kwargs.get("num_proc")}

    def _split_generators(self, dl_manager, num_proc: int | None = None) -> list[datasets.SplitGenerator]:
        if not self.config.data_dir:
            raise ValueError("MixingBuddyGain needs data_dir=<a MUSDB18HQ-layout folder with train/ and test/>")
        cache = StemCache(self.config.data_dir, self.config.sampling_rate, self.config.stem_cache_dir)
        split_tracks = assign_splits(cache.tracks, self.config.seed, self.config.validation_fraction)
        gated = self._cache_and_gate(cache, sorted(cache.tracks), num_proc)
        generators = []
        for split, names in split_tracks.items():
            self.gating_stats[split] = sum((gated[name][1] for name in names), GatingStats())
            chunks = [(name, index) for name in names for index in gated[name][0]]
            if chunks:
                generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"chunks": chunks}))
            elif names:  # a split without tracks (a held-out set has only test/) is left out silently
                logger.warning(
                    f"The {split} split is left out: none of its {len(names)} tracks has a chunk that passes the gating"
                )
        if not generators:
            counts = "; ".join(
                f"{split}: " + ", ".join(f"{k} {v}" for k, v in stats.to_dict().items() if v)
                for split, stats in self.gating_stats.items()
            )
            raise ValueError(f"No chunk of {self.config.data_dir} passes the gating ({counts}): there is nothing to build.")
        return generators

    def _cache_and_gate(self, cache: StemCache, names: list[str], num_proc: int | None) -> dict:
        """{track: (kept chunk indices, GatingStats)}, filling the stem cache on the way (in parallel with num_proc)."""
        job = functools.partial(
            _cache_and_gate_track,
            cache.stems_dir,
            cache.sampling_rate,
            cache_root(self.config.stem_cache_dir),
            self.config.chunk_seconds,
            self.config.gating,
        )
        progress = {"total": len(names), "desc": "Caching and gating stems", "unit": " tracks"}
        if not num_proc or num_proc <= 1:
            return dict(zip(names, list(tqdm(map(job, names), **progress))))
        with ProcessPoolExecutor(max_workers=num_proc) as pool:
            return dict(zip(names, list(tqdm(pool.map(job, names), **progress))))

    def _generate_examples(self, chunks: list[tuple[str, int]]):
        make_rows = expanded_rows if self.config.expanded else sampled_rows
        for track, chunk_index in chunks:
            for row in make_rows(self.config.seed, track, chunk_index, self.config.chunk_seconds):
                yield row["uid"], row


def _cache_and_gate_track(
    stems_dir: Path, sampling_rate: int, root: Path, chunk_seconds: float, thresholds: GatingThresholds, name: str
) -> tuple[list[int], GatingStats]:
    stems = StemCache(stems_dir, sampling_rate, root).load(name)  # [len(STEMS), samples]
    return gate_chunks(stems, sampling_rate, chunk_seconds, thresholds)
