"""Baselines without a language model: class → advice, allowed classes, scoring, the statistics classifier."""

import numpy as np
import pytest
import torch
from datasets import load_dataset

from dataset_builder import StemCache
from dataset_builder.rows import as_row
from mixingbuddy.evaluation.baselines import (
    StemLevels,
    allowed_classes,
    class_advice,
    fit_statistics_classifier,
    log_mel_statistics,
    score_classifier,
    stem_level_features,
)
from mixingbuddy.hub.vocabulary_mixingbuddy import (
    ADVICE_CLASSES,
    CATEGORIES,
    MIX_CLIP,
    STEMS,
    format_response,
    parse_advice,
)
from mixingbuddy.training.collator import advice_labels


def row(target, category, anchor="vocals", stems=STEMS):
    return {"uid": f"{target}-{category}-{anchor}", "instruction": "?", "response": format_response(category, target),
            "target_stem": target, "error_category": category, "anchor_stem": anchor, "stems_present": list(stems)}


def test_every_class_reads_back_as_its_advice():
    for index, name in enumerate(ADVICE_CLASSES):
        parsed = parse_advice(class_advice(index))
        if name == "no_error":
            assert parsed["direction"] == "none" and parsed["stem"] is None
        else:
            stem, category = name.split(":")
            assert (parsed["stem"], parsed["direction"], (parsed["min_db"], parsed["max_db"])) == (
                stem, CATEGORIES[category].direction, CATEGORIES[category].correction_db)


def test_scoring_picks_the_best_allowed_class():
    rows = [row("drums", "loud"), row("bass", "no_error", anchor="drums"), row("drums", "quiet", "bass", ("bass", "drums", "other"))]
    assert allowed_classes(rows[0]).sum() == 1 + 4 * 2  # no vocals advice with the vocals as anchor
    assert allowed_classes(rows[2]).sum() == 1 + 4  # only the drums may change
    logits = torch.zeros(3, len(ADVICE_CLASSES))
    logits[0, ADVICE_CLASSES.index("vocals:very_loud")] = 9  # not allowed: the anchor
    logits[0, ADVICE_CLASSES.index("drums:loud")] = 5
    logits[1, 0] = 1
    logits[2, ADVICE_CLASSES.index("vocals:quiet")] = 9  # not present
    logits[2, ADVICE_CLASSES.index("drums:very_quiet")] = 2
    metrics, records = score_classifier(rows, logits)
    assert [r["generated"] for r in records] == [class_advice(ADVICE_CLASSES.index("drums:loud")), class_advice(0),
                                                 class_advice(ADVICE_CLASSES.index("drums:very_quiet"))]
    # joint = stem and direction (the paper's); the third row's size is wrong
    assert (metrics["overall"]["n"], metrics["overall"]["joint_accuracy"], metrics["overall"]["magnitude_accuracy"]) == (3, 1, 0.5)
    assert metrics["overall"]["impossible_share"] == 0
    assert advice_labels(rows).tolist() == [ADVICE_CLASSES.index("drums:loud"), 0, ADVICE_CLASSES.index("drums:quiet")]


def test_statistics_classifier_learns_and_keeps_its_best_epoch():
    generator = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(len(ADVICE_CLASSES), 8, generator=generator)
    labels = torch.randint(len(ADVICE_CLASSES), (1200,), generator=generator)
    features = centres[labels] + torch.randn(1200, 8, generator=generator)
    train, validation = (features[:1000], labels[:1000]), (features[1000:], labels[1000:])
    for hidden in (256, None):
        model = fit_statistics_classifier(train, validation, hidden_size=hidden, seed=0, max_epochs=60, patience=10)
        accuracy = (model(validation[0]).argmax(-1) == validation[1]).float().mean()
        assert accuracy > 0.8 and not model.training  # chance: 1/13
    again = fit_statistics_classifier(train, validation, seed=0, max_epochs=5)
    torch.testing.assert_close(again(features), fit_statistics_classifier(train, validation, seed=0, max_epochs=5)(features))


def test_log_mel_statistics_are_mean_and_std_per_bin():
    class Collator:
        def __call__(self, rows, labels=True):
            return {"input_values": torch.stack([r["audio"] for r in rows])}

    rows = [{"audio": torch.full((5,), float(i))} for i in range(70)]
    frames = lambda values: values[:, :, None] * torch.tensor([1.0, 2.0])  # [batch, 5 frames, 2 bins]
    stats = log_mel_statistics(rows, Collator(), frames, batch_size=32)
    assert stats.shape == (70, 4)
    torch.testing.assert_close(stats[9], torch.tensor([9.0, 18.0, 0.0, 0.0]))


def test_stem_levels_are_the_rendered_clips_levels_against_the_mix(synthetic_data):
    stems_dir, dataset_dir, cache_dir = synthetic_data
    rows = [as_row(r) for r in load_dataset(str(dataset_dir), split="train").select(range(0, 240, 23))]
    cache = StemCache(stems_dir, 24000, cache_dir=cache_dir)
    levels = StemLevels(cache)
    for row in rows:
        clips = [c.astype(np.float64) for c in cache.render_clips(row, [*STEMS, MIX_CLIP], {"other": 3.0})]
        expected = [max(10 * np.log10(np.mean(c**2) / np.mean(clips[-1] ** 2)), -60.0) for c in clips[:-1]]
        np.testing.assert_allclose(levels(row, row["gain_db"], 3.0), expected, atol=1e-3)
    row = next(r for r in rows if r["error_category"] == "no_error")
    raised = levels(row, 6.0) - levels(row, 0.0)  # the target 6 dB up: it gains 6 dB on itself against the others
    target = STEMS.index(row["target_stem"])
    assert raised[target] - np.delete(raised, target).mean() == pytest.approx(6.0, abs=1e-6)


def test_stem_level_features_redraw_gains_within_the_category_from_the_seed(synthetic_data):
    stems_dir, dataset_dir, cache_dir = synthetic_data
    rows = [as_row(r) for r in load_dataset(str(dataset_dir), split="train").select(range(60))]
    levels = StemLevels(StemCache(stems_dir, 24000, cache_dir=cache_dir))
    exact = stem_level_features(rows, levels)
    assert exact.shape == (60, len(STEMS) + 3) and exact[:, len(STEMS):].sum(1).eq(1).all()  # levels, anchor one-hot
    fresh = stem_level_features(rows, levels, seed=1, other_spread_db=6.0)
    torch.testing.assert_close(fresh, stem_level_features(rows, levels, seed=1, other_spread_db=6.0))
    assert not torch.equal(fresh, stem_level_features(rows, levels, seed=2, other_spread_db=6.0))
    balanced = [i for i, r in enumerate(rows) if r["error_category"] == "no_error"]
    other = STEMS.index("other")
    moved = (fresh[balanced] - exact[balanced]).abs()  # no gain to redraw: only `other` moved, the rest follow the mix
    assert moved[:, other].max() > 1.0 and moved[:, other].max() <= 6.0 + 1e-4
