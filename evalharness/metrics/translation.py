"""Corpus BLEU, chrF/chrF++ and TER through sacrebleu, with CIs by resampling their stats.

Each sample's `Score.stats` are sacrebleu's own per-segment sufficient statistics
(`Metric._extract_corpus_statistics` on that one segment, with all of the sample's
references), and `aggregate` sums them and calls sacrebleu's `_compute_score_from_stats`:
exactly how `corpus_score` works, so corpus values match sacrebleu and a bootstrap that
resamples rows of the stats matrix gives a CI for the corpus score. Stats layouts:

    BLEU  [hyp_len, closest_ref_len, correct_1..N, total_1..N]      (N = max_ngram_order)
    chrF  [n_hyp, n_ref, n_match] per char order, then per word order
    TER   [best_num_edits, average_ref_len]

Samples may have any number of references each, as sacrebleu allows (BLEU merges their
n-gram counts and takes the closest length; chrF and TER take the best reference).
Per-sample values are sentence-level scores; for BLEU that is sacrebleu's sentence BLEU
(`effective_order=True`), since plain BLEU of one short segment is almost always 0.
Scores are on sacrebleu's 0-100 scale. The flores/spm tokenizers download at run time and
so fail offline; 13a, intl, zh, char and none work offline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalharness.errors import SpecError
from evalharness.metrics import first_answer, require_references
from evalharness.metrics.base import Metric, MetricKind, TaskKind
from evalharness.types import Output, Sample, Score


class _SacrebleuMetric(Metric):
    """Shared plumbing: per-segment stats out of sacrebleu, corpus score from summed stats."""

    kinds: frozenset[TaskKind] = frozenset({"generate"})
    kind: MetricKind = "corpus"
    integer_stats = True
    additive = True  # aggregate reads only the column sums of the stats (lets the bootstrap sum by matrix product)

    def __init__(self, name: str, higher_is_better: bool, impl: Any) -> None:
        self.name = name
        self.higher_is_better = higher_is_better
        self._impl = impl

    def segment_stats(self, hypothesis: str, references: tuple[str, ...]) -> list[float]:
        """sacrebleu's sufficient statistics of one segment against its references."""
        stats: list[float] = self._impl._extract_corpus_statistics(
            [hypothesis], [[ref] for ref in references]
        )[0]
        return stats

    def _score_from(self, stats: list[Any]) -> float:
        return float(self._impl._compute_score_from_stats(stats).score)

    def _sentence_value(self, stats: list[Any]) -> float:
        return self._score_from(list(stats))

    def score(self, sample: Sample, output: Output) -> Score:
        stats = self.segment_stats(first_answer(output), require_references(sample, self.name))
        return Score(self._sentence_value(stats), stats=tuple(float(x) for x in stats))

    def aggregate(self, stats: np.ndarray) -> float:
        if len(stats) == 0:
            return float("nan")
        summed = np.sum(stats, axis=0)
        values: list[Any] = (
            [round(x) for x in summed] if self.integer_stats else [float(x) for x in summed]
        )
        return self._score_from(values)


class _Bleu(_SacrebleuMetric):
    def _sentence_value(self, stats: list[Any]) -> float:
        from sacrebleu.metrics.bleu import BLEU

        impl = self._impl
        order = impl.max_ngram_order
        return float(
            BLEU.compute_bleu(
                correct=list(stats[2 : 2 + order]),
                total=list(stats[2 + order :]),
                sys_len=int(stats[0]),
                ref_len=int(stats[1]),
                smooth_method=impl.smooth_method,
                smooth_value=impl.smooth_value,
                effective_order=True,
                max_ngram_order=order,
            ).score
        )


class _Ter(_SacrebleuMetric):
    integer_stats = False

    def preprocess(self, text: str) -> str:
        """The tokenised, normalised text TER compares (Tercom rules under this config)."""
        out: str = self._impl._preprocess_segment(text)
        return out


def _build(kind: str, cls: Any, **kwargs: Any) -> Any:
    """sacrebleu's metric object; a value it refuses is one line naming the parameters that differ
    from sacrebleu's defaults (the ones the user set), not every parameter."""
    import inspect

    try:
        return cls(**kwargs)
    except (KeyError, AssertionError, ValueError) as exc:
        defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
        set_ = {k: v for k, v in kwargs.items() if k not in defaults or defaults[k] != v}
        shown = ", ".join(f"{k}={v!r}" for k, v in set_.items()) or "the defaults"
        why = f"unknown value {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc) or type(exc).__name__
        raise SpecError(f"metric {kind!r}: sacrebleu refuses {shown}: {why}") from exc


def bleu(
    tokenize: str | None = None,
    lowercase: bool = False,
    smooth_method: str = "exp",
    smooth_value: float | None = None,
    effective_order: bool = False,
    max_ngram_order: int = 4,
    force: bool = True,
    trg_lang: str = "",
) -> _SacrebleuMetric:
    """Corpus BLEU (sacrebleu defaults: 13a tokenizer, exp smoothing, 4-grams)."""
    from sacrebleu.metrics.bleu import BLEU

    impl = _build(
        "bleu", BLEU, tokenize=tokenize, lowercase=lowercase, smooth_method=smooth_method,
        smooth_value=smooth_value, effective_order=effective_order,
        max_ngram_order=max_ngram_order, force=force, trg_lang=trg_lang,
    )
    return _Bleu("bleu", True, impl)


def chrf(
    char_order: int = 6,
    word_order: int = 0,
    beta: int = 2,
    lowercase: bool = False,
    whitespace: bool = False,
    eps_smoothing: bool = False,
    name: str = "chrf",
) -> _SacrebleuMetric:
    """Corpus chrF (sacrebleu's CHRF defaults: chrF2, whitespace ignored)."""
    from sacrebleu.metrics.chrf import CHRF

    impl = _build(
        name, CHRF, char_order=char_order, word_order=word_order, beta=beta,
        lowercase=lowercase, whitespace=whitespace, eps_smoothing=eps_smoothing,
    )
    return _SacrebleuMetric(name, True, impl)


def chrf_plus_plus(
    char_order: int = 6,
    word_order: int = 2,
    beta: int = 2,
    lowercase: bool = False,
    whitespace: bool = False,
    eps_smoothing: bool = False,
) -> _SacrebleuMetric:
    """Corpus chrF++: chrF plus word uni- and bigrams (word_order=2)."""
    return chrf(char_order, word_order, beta, lowercase, whitespace, eps_smoothing, "chrf++")


def ter(
    normalized: bool = False,
    no_punct: bool = False,
    asian_support: bool = False,
    case_sensitive: bool = False,
) -> _Ter:
    """Corpus TER (lower is better): total edits / total average reference length."""
    from sacrebleu.metrics.ter import TER

    impl = _build(
        "ter", TER, normalized=normalized, no_punct=no_punct,
        asian_support=asian_support, case_sensitive=case_sensitive,
    )
    return _Ter("ter", False, impl)
