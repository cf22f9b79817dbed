"""SQuAD exact match and token F1, as the official v1.1 and v2.0 evaluation scripts define them.

Normalisation (both versions): lowercase, drop ASCII punctuation, drop the articles
a/an/the, collapse whitespace. Per-sample values are on the 0-100 scale like the official
scripts' output, taking the maximum over the sample's references.

Version differences, mirrored here:
- v1.1: every question has an answer; a sample without references is a data error.
  Token F1 is 0 whenever there is no overlap, even if both sides normalise to nothing.
- v2.0: references that normalise to the empty string are dropped; a sample left with
  none is unanswerable and is correct iff the prediction normalises to empty. F1 is
  1 (x100) when both sides are empty and 0 when exactly one is.
"""

from __future__ import annotations

import re
import string
from collections import Counter

from evalharness.errors import SpecError
from evalharness.metrics import first_answer, require_references
from evalharness.metrics.base import MeanMetric, MetricKind, TaskKind
from evalharness.types import Output, Sample, Score

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
VERSIONS = ("1.1", "2.0")


def normalize_answer(text: str) -> str:
    """Lowercase, strip punctuation and articles, and collapse whitespace (SQuAD's rules)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, reference: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1_score(prediction: str, reference: str, version: str = "1.1") -> float:
    """Bag-of-tokens F1 between normalised prediction and reference, in [0, 1]."""
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    if version == "2.0" and (not pred_tokens or not ref_tokens):
        return float(pred_tokens == ref_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def _check_version(version: str) -> str:
    version = str(version)
    if version not in VERSIONS:
        raise SpecError(f"squad metric: version must be one of {VERSIONS}, got {version!r}")
    return version


class _SquadMetric(MeanMetric):
    higher_is_better = True
    kind: MetricKind = "bounded"
    scale = (0.0, 100.0)
    kinds: frozenset[TaskKind] = frozenset({"generate"})

    def __init__(self, name: str, version: str = "1.1") -> None:
        self.name = name
        self.version = _check_version(version)

    def _references(self, sample: Sample) -> list[str]:
        if self.version == "1.1":
            return list(require_references(sample, self.name))
        answerable = [r for r in sample.references if normalize_answer(r)]
        return answerable or [""]

    def _pair(self, prediction: str, reference: str) -> float:
        raise NotImplementedError

    def score(self, sample: Sample, output: Output) -> Score:
        prediction = first_answer(output)
        best = max(self._pair(prediction, ref) for ref in self._references(sample))
        return Score(100.0 * best)


class _ExactMatch(_SquadMetric):
    kind: MetricKind = "binary"

    def _pair(self, prediction: str, reference: str) -> float:
        return exact_match_score(prediction, reference)


class _F1(_SquadMetric):
    def _pair(self, prediction: str, reference: str) -> float:
        return token_f1_score(prediction, reference, self.version)


def exact_match(version: str = "1.1") -> MeanMetric:
    """SQuAD exact match (0-100 per sample), max over references."""
    return _ExactMatch("exact_match", version)


def f1(version: str = "1.1") -> MeanMetric:
    """SQuAD token F1 (0-100 per sample), max over references."""
    return _F1("f1", version)
