"""Baselines without a language model, scored like the model: a classifier's advice class (`ADVICE_CLASSES`) becomes
the advice it stands for, read back and graded by `score_predictions`. The floor the model must clear."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dataset_builder.seeding import keyed_rng
from dataset_builder.stem_cache import stem_weights

from ..hub.vocabulary_mixingbuddy import ADVICE_CLASSES, STEMS, TARGET_STEMS, advice_stems, format_response
from ..training.collator import advice_labels
from .scoring import prediction_record, score_predictions


def class_advice(index: int) -> str:
    """The response an advice class stands for (its first wording)."""
    if ADVICE_CLASSES[index] == "no_error":
        return format_response("no_error")
    stem, category = ADVICE_CLASSES[index].split(":")
    return format_response(category, stem)


def allowed_classes(row: dict) -> torch.Tensor:
    """[len(ADVICE_CLASSES)] bool: the classes whose advice may be given for the row's stems and anchor."""
    stems = advice_stems(row["stems_present"], row["anchor_stem"])
    return torch.tensor([name == "no_error" or name.split(":")[0] in stems for name in ADVICE_CLASSES])


def score_classifier(rows: Sequence[dict], logits: torch.Tensor) -> tuple[dict, list[dict]]:
    """(metrics, prediction records) of class logits [rows, len(ADVICE_CLASSES)]: the most likely allowed class of each
    row, as advice text, graded like the model's answers."""
    mask = torch.stack([allowed_classes(row) for row in rows])
    chosen = logits.masked_fill(~mask, -torch.inf).argmax(-1).tolist()
    records = [prediction_record(row, class_advice(c)) for row, c in zip(rows, chosen)]
    return score_predictions(records), records


def row_batches(rows: Sequence[dict], batch_size: int, desc: str):
    """Consecutive lists of at most `batch_size` rows (of a list or a `datasets` split), with a progress bar."""
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch"):
        yield [rows[i] for i in range(start, min(start + batch_size, len(rows)))]


@torch.no_grad()
def log_mel_statistics(rows: Sequence[dict], collator, log_mel, batch_size: int = 64) -> torch.Tensor:
    """Clip-average log-mel statistics of the rows' rendered clips (those the model hears: the mix, or several clips)
    as the model's front-end sees them: per clip and mel bin, the mean and the standard deviation over the clip's
    frames, each clip's statistics side by side in the prompt's clip order, [rows, clips × 2 × num_mel_bins]."""
    features = []
    for batch in row_batches(rows, batch_size, "log-mel statistics"):
        values = collator(batch, labels=False)["input_values"]  # [batch, (clips,) samples]
        frames = log_mel(values.reshape(-1, values.shape[-1]))  # [batch × clips, frames, num_mel_bins]
        statistics = torch.cat([frames.mean(1), frames.std(1)], dim=-1)  # [batch × clips, 2 × num_mel_bins]
        features.append(statistics.reshape(len(batch), -1))
    return torch.cat(features)


class StemLevels:
    """Each stem's level in a row's flawed mix relative to the mix's level, computed exactly from the stems: what a
    listener who could solo every stem would know, and all a balance judgement can rest on when the flaw is a gain.

    A classifier on these levels (`stem_level_features`) is a level oracle: its errors are the rows that perfect level
    knowledge leaves ambiguous under the corpus's balance convention, an estimate of the best accuracy any input
    setting can reach. Each chunk's Gram matrix of the stems (`cache.chunk`) is computed once, so any gains are then
    exact and cheap: the mix's energy is wᵀGw and stem s's is w_s² G_ss. The levels are read over the whole chunk
    (the model's `clip_levels` gate out each clip's quiet frames; on one-chunk songs whose parts play throughout, the
    two agree).
    """

    def __init__(self, cache, floor_db: float = -60.0):
        self.cache, self.floor_db = cache, floor_db
        self._grams: dict[tuple, np.ndarray] = {}

    def gram(self, row: dict) -> np.ndarray:
        key = (row["track"], row["start_sec"], row["end_sec"])
        if key not in self._grams:
            stems = self.cache.chunk(*key).astype(np.float64)  # [len(STEMS), samples]
            self._grams[key] = stems @ stems.T  # [len(STEMS), len(STEMS)]
        return self._grams[key]

    def __call__(self, row: dict, gain_db: float, other_gain_db: float = 0.0) -> np.ndarray:
        """[len(STEMS)] level of each stem minus the mix's, in dB (at least `floor_db`), the target moved by
        `gain_db` and `other` by `other_gain_db`; a stem the row leaves out is at the floor."""
        weights = stem_weights(row, gain_db, {"other": other_gain_db}, dtype=np.float64)  # [len(STEMS)]
        gram = self.gram(row)
        stem_energy = weights**2 * np.diag(gram)  # [len(STEMS)]
        relative = 10 * np.log10((stem_energy + 1e-20) / (weights @ gram @ weights + 1e-20))
        return np.maximum(relative, self.floor_db)


def stem_level_features(
    rows: Sequence[dict], levels: StemLevels, seed: int | None = None, other_spread_db: float = 0.0
) -> torch.Tensor:
    """[rows, len(STEMS) + len(TARGET_STEMS)] `StemLevels` of the rows (at their own gains) and the anchor one-hot.
    With `seed`, each row's gain is drawn anew within its category and `other` moved within ±`other_spread_db`, from a
    generator keyed by (seed, uid), as the training collator's `fresh_gains` and `other_spread_db` do."""
    features = []
    for row in rows:
        gain_db, other_gain_db = row["gain_db"], 0.0
        if seed is not None:
            rng = keyed_rng(seed, row["uid"], "stem levels")
            gain_db = float(rng.uniform(row["min_gain_db"], row["max_gain_db"]))
            other_gain_db = float(rng.uniform(-other_spread_db, other_spread_db)) if other_spread_db else 0.0
        features.append(levels(row, gain_db, other_gain_db))
    return torch.cat([torch.tensor(np.stack(features), dtype=torch.float32), anchor_one_hot(rows)], dim=-1)


def anchor_one_hot(rows: Sequence[dict]) -> torch.Tensor:
    """[rows, len(TARGET_STEMS)] one-hot of each row's anchor stem."""
    return nn.functional.one_hot(
        torch.tensor([TARGET_STEMS.index(r["anchor_stem"]) for r in rows]), len(TARGET_STEMS)
    ).float()


class StatisticsClassifier(nn.Module):
    """Standardised features → one hidden layer (GELU, dropout) → advice-class logits; `hidden_size=None` is a linear
    classifier. The standardisation is fitted to the training features."""

    def __init__(self, in_features: int, hidden_size: int | None = 256, dropout: float = 0.3):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        if hidden_size is None:
            self.layers = nn.Linear(in_features, len(ADVICE_CLASSES))
        else:
            self.layers = nn.Sequential(
                nn.Linear(in_features, hidden_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_size, len(ADVICE_CLASSES))
            )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # features: [batch, in_features] -> logits [batch, len(ADVICE_CLASSES)]
        return self.layers((features - self.mean) / self.std)


def fit_statistics_classifier(
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    hidden_size: int | None = 256,
    seed: int = 0,
    max_epochs: int = 400,
    patience: int = 40,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
) -> StatisticsClassifier:
    """Train a `StatisticsClassifier` on (features, labels) with Adam, keeping the epoch with the best validation
    accuracy and stopping after `patience` epochs without a better one."""
    torch.manual_seed(seed)
    (x, y), (val_x, val_y) = train, validation
    model = StatisticsClassifier(x.shape[1], hidden_size)
    model.mean.copy_(x.mean(0))
    model.std.copy_(x.std(0).clamp(min=1e-6))
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    order = torch.Generator().manual_seed(seed)
    best, best_state, waited = -1.0, None, 0
    for _ in range(max_epochs):
        model.train()
        for batch in torch.randperm(len(x), generator=order).split(batch_size):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(val_x).argmax(-1) == val_y).float().mean().item()
        if accuracy > best:
            best, best_state, waited = accuracy, copy.deepcopy(model.state_dict()), 0
        elif (waited := waited + 1) >= patience:
            break
    model.load_state_dict(best_state)
    return model.eval()


def statistics_baselines(
    splits: dict[str, Sequence[dict]], collator, log_mel, hidden_sizes=(256, None), seed: int = 0
) -> dict[int | None, tuple[dict, list[dict]]]:
    """Train a clip-statistics classifier per hidden size (None: linear) on `splits["train"]`, early-stopped on
    `splits["validation"]`, and score it on `splits["test"]`: {hidden size: (metrics, prediction records)}. Inputs:
    `log_mel_statistics` of the clips the collator renders (computed once) and the anchor one-hot."""
    data = {
        name: (torch.cat([log_mel_statistics(rows, collator, log_mel), anchor_one_hot(rows)], dim=-1), advice_labels(rows))
        for name, rows in splits.items()
    }
    test_rows = [splits["test"][i] for i in range(len(splits["test"]))]
    results = {}
    for hidden_size in hidden_sizes:
        model = fit_statistics_classifier(data["train"], data["validation"], hidden_size=hidden_size, seed=seed)
        with torch.no_grad():
            results[hidden_size] = score_classifier(test_rows, model(data["test"][0]))
    return results


def train_advice_head(model, collator, rows: Sequence[dict], steps: int, learning_rate: float, batch_size: int = 16,
                      seed: int = 0):
    """Train the audio path (tower, layer mix, projector) and the advice head of a tiny `model` as a classifier alone,
    without the language model: AdamW with cosine decay, `steps` batches of rendered (augmented) training clips in a
    seeded order, a new augmentation each epoch. Returns the model in eval mode."""
    inner = model.model
    modules = (inner.audio_tower, inner.layer_weights, inner.projector, model.advice_head)
    optimizer = torch.optim.AdamW([p for m in modules for p in m.parameters()], lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + np.cos(np.pi * step / steps)))
    order = torch.Generator().manual_seed(seed)
    batches = []
    model.train()
    for _ in tqdm(range(steps), desc="advice head alone", unit="step"):
        if not batches:
            batches = torch.randperm(len(rows), generator=order).split(batch_size)[::-1]
            batches = [b for b in batches if len(b) == batch_size]
            collator.epoch += 1
        batch = [rows[i] for i in batches.pop().tolist()]
        logits = model.advice_head(inner.get_audio_features(collator(batch, labels=False)["input_values"]))
        loss = nn.functional.cross_entropy(logits, advice_labels(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


@torch.no_grad()
def advice_head_logits(model, collator, rows: Sequence[dict], batch_size: int = 64) -> torch.Tensor:
    """[rows, len(ADVICE_CLASSES)] logits of a model's advice head on the rows' rendered clips (no augmentation)."""
    logits = []
    for batch in row_batches(rows, batch_size, "advice head"):
        logits.append(model.advice_head(model.model.get_audio_features(collator(batch, labels=False)["input_values"])))
    return torch.cat(logits)


__all__ = [
    "StatisticsClassifier",
    "StemLevels",
    "advice_head_logits",
    "class_advice",
    "fit_statistics_classifier",
    "log_mel_statistics",
    "score_classifier",
    "statistics_baselines",
    "stem_level_features",
    "train_advice_head",
]
