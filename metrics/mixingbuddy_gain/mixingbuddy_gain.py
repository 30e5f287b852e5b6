"""MixingBuddy-gain advice metric for 🤗 Evaluate: joint, stem, direction and magnitude accuracy, detection tables."""

import datasets
import evaluate

from mixingbuddy.evaluation.scoring import labels_from_response, score_predictions
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

_CITATION = """\
@misc{vadhusas_lerch_mixingbuddy,
  title  = {MixingBuddy: A Multimodal LLM for Mix Critique and Advice},
  author = {Vadhusas, Pratham and Lerch, Alexander},
  note   = {Evaluation: Section IV and Tables I-IV; code at https://github.com/rp-bot/MixingBuddy-gain},
}
"""

_DESCRIPTION = """\
Scores generated mixing advice ("The drums are too loud. Reduce the drums by 3 to 6 dB.") against ground-truth
responses. Both are read with MixingBuddy's `parse_advice`; the metrics are those of `mixingbuddy.evaluation.scoring`:
joint, stem, direction and magnitude accuracy, unparseable and impossible shares, TP/FP/FN/TN tables for error
detection, stem identification and direction prediction, and breakdowns by error category, stem and direction.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): generated advice texts.
    references (`list` of `str`): ground-truth responses (the dataset's `response` field); the target stem and error
        category are read back from them.
    anchor_stem (`list` of `str`, *optional*): the anchor named in each instruction; an answer that asks to change it
        counts as impossible. Without it the anchor check is skipped.
    stems_present (`list` of `list` of `str`, *optional*): the stems in each mix; defaults to all four stems.
Returns:
    `dict` with `overall`, `error_detection`, `stem_identification`, `direction_prediction`, `by_category`,
    `by_stem` and `by_direction` (see `mixingbuddy.evaluation.scoring.score_predictions`).
Examples:
    >>> metric = evaluate.load(mixingbuddy.metric_path())  # installed with the package: works from any folder
    >>> results = metric.compute(
    ...     predictions=["The drums are far too loud. Cut the drums by 6 to 12 dB."],
    ...     references=["The drums are far too loud. Reduce the drums by 6 to 12 dB."],
    ... )
    >>> results["overall"]["joint_accuracy"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MixingbuddyGain(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, anchor_stem=None, stems_present=None):
        n = len(predictions)
        anchor_stem = [None] * n if anchor_stem is None else list(anchor_stem)
        stems_present = [STEMS] * n if stems_present is None else list(stems_present)
        if not len(anchor_stem) == len(stems_present) == n:
            raise ValueError(
                f"Got {n} predictions, {len(anchor_stem)} anchor stems and {len(stems_present)} stem lists; "
                "give one of each per prediction."
            )
        records = [
            {**labels_from_response(reference), "generated": prediction, "anchor_stem": anchor, "stems_present": stems}
            for prediction, reference, anchor, stems in zip(predictions, references, anchor_stem, stems_present)
        ]
        return score_predictions(records)
