"""Multiple-choice accuracy as lm-evaluation-harness 0.4.x computes it.

From `ConfigurableTask.process_results` (output_type multiple_choice) in
lm_eval/api/task.py of lm-eval 0.4.13:

    completion_len = np.array([float(len(i)) for i in choices])
    byte_length = np.array([float(len(i.encode("utf-8"))) for i in choices])
    pred = np.argmax(lls)
    pred_norm = np.argmax(lls / completion_len)

`choices` there comes from `doc_to_choice(doc)`: the bare choice strings. The target
delimiter (" ") is only prepended when the requests are built, so it is not counted in the
length. Ties go to the first maximum (np.argmax), as there.
"""

from __future__ import annotations

import numpy as np

from evalharness.errors import DataError
from evalharness.metrics.base import MeanMetric, MetricKind, TaskKind
from evalharness.types import Output, Sample, Score


class _ChoiceAccuracy(MeanMetric):
    higher_is_better = True
    kind: MetricKind = "binary"
    scale = (0.0, 1.0)
    kinds: frozenset[TaskKind] = frozenset({"multiple_choice"})

    def __init__(self, name: str, normalise: str | None) -> None:
        self.name = name
        self.normalise = normalise  # None | "chars" | "bytes"

    def _check(self, sample: Sample, output: Output) -> int:
        if sample.gold is None:
            raise DataError(f"metric {self.name!r}: sample {sample.id!r} has no gold index")
        if len(output.logprobs) != len(sample.choices):
            raise DataError(
                f"metric {self.name!r}: sample {sample.id!r} has {len(sample.choices)} choices "
                f"but {len(output.logprobs)} loglikelihoods"
            )
        return sample.gold

    def score(self, sample: Sample, output: Output) -> Score:
        gold = self._check(sample, output)
        lls = np.asarray(output.logprobs, dtype=float)
        if self.normalise == "chars":
            lls = lls / np.array([float(len(c)) for c in sample.choices])
        elif self.normalise == "bytes":
            lls = lls / np.array([float(len(c.encode("utf-8"))) for c in sample.choices])
        pred = int(np.argmax(lls))
        return Score(1.0 if pred == gold else 0.0, extra={"pred": pred})


def acc() -> MeanMetric:
    """1 if the choice with the highest loglikelihood is the gold one."""
    return _ChoiceAccuracy("acc", None)


def acc_norm() -> MeanMetric:
    """Accuracy after dividing each loglikelihood by its choice's length in characters."""
    return _ChoiceAccuracy("acc_norm", "chars")


def acc_bytes() -> MeanMetric:
    """Accuracy after dividing each loglikelihood by its choice's length in UTF-8 bytes."""
    return _ChoiceAccuracy("acc_bytes", "bytes")
