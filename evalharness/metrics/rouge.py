"""ROUGE-1/2/L/Lsum F-measure through Google's rouge-score package.

Per sample: rouge-score's F-measure against each reference, keeping the reference with the
highest F-measure (as `RougeScorer.score_multi` does); precision and recall of that
reference go to `Score.extra`. Corpus value: the mean of per-sample F-measures, on the
0-1 scale (rouge-score's BootstrapAggregator, used by Hugging Face `evaluate`, reports
the bootstrap median of that mean as "mid", so its figures can differ slightly).
rougeLsum splits texts into sentences on newlines, as rouge-score does without
`split_summaries` (that option needs NLTK data not available offline, so it is not
offered).

Tokenizers (param `tokenizer`):
- "default": rouge-score's own. Lowercases and keeps only [a-z0-9] runs, so accented
  letters split words and non-Latin scripts vanish (identical Hindi strings score 0).
  Use it for English, where it reproduces published ROUGE numbers.
- "unicode": NFKC-normalises and casefolds, then keeps runs of Unicode letters, marks and
  digits (Devanagari vowel signs stay inside their word); Han, Hiragana and Katakana, which
  are written without spaces, become one token per character. Use it for any other
  language. `use_stemmer` still applies Porter stemming, but only to ASCII tokens.
"""

from __future__ import annotations

import functools
import itertools
import unicodedata
from typing import Any

from evalharness.errors import SpecError
from evalharness.metrics import first_answer, require_references
from evalharness.metrics.base import MeanMetric, MetricKind, TaskKind
from evalharness.types import Output, Sample, Score

TOKENIZERS = ("default", "unicode")
_ASCII_WORD = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


@functools.lru_cache(maxsize=65536)
def _char_class(ch: str) -> int:
    """0: separator, 1: word character, 2: a character that is a word of its own (CJK)."""
    category = unicodedata.category(ch)
    if category[0] not in "LMN":
        return 0
    if category == "Lo":
        name = unicodedata.name(ch, "")
        if name.startswith(("CJK UNIFIED", "CJK COMPATIBILITY", "HIRAGANA", "KATAKANA")):
            return 2
    return 1


class UnicodeTokenizer:
    """A rouge-score tokenizer (has `tokenize`) that keeps letters of every script."""

    def __init__(self, use_stemmer: bool = False) -> None:
        self._stemmer: Any = None
        if use_stemmer:
            from nltk.stem import porter

            self._stemmer = porter.PorterStemmer()

    def _stem(self, token: str) -> str:
        # rouge-score only stems tokens longer than 3 characters; Porter is English-only.
        if self._stemmer is None or len(token) <= 3 or not set(token) <= _ASCII_WORD:
            return token
        stemmed: str = self._stemmer.stem(token)
        return stemmed

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).casefold()
        tokens: list[str] = []
        for cls, group in itertools.groupby(text, key=_char_class):
            if cls == 1:
                tokens.append(self._stem("".join(group)))
            elif cls == 2:
                tokens.extend(group)
        return tokens


class _Rouge(MeanMetric):
    higher_is_better = True
    kind: MetricKind = "bounded"
    scale = (0.0, 1.0)
    kinds: frozenset[TaskKind] = frozenset({"generate"})

    def __init__(self, rouge_type: str, use_stemmer: bool = False, tokenizer: str = "default") -> None:
        from rouge_score import rouge_scorer

        if tokenizer not in TOKENIZERS:
            raise SpecError(f"metric {rouge_type!r}: tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
        self.name = rouge_type
        self.use_stemmer = use_stemmer
        self.tokenizer = tokenizer
        custom = UnicodeTokenizer(use_stemmer) if tokenizer == "unicode" else None
        self._scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=use_stemmer, tokenizer=custom)

    def score(self, sample: Sample, output: Output) -> Score:
        prediction = first_answer(output)
        results = [self._scorer.score(ref, prediction)[self.name] for ref in require_references(sample, self.name)]
        best = max(results, key=lambda r: r.fmeasure)  # first maximum, as score_multi's argmax
        return Score(
            float(best.fmeasure), extra={"precision": float(best.precision), "recall": float(best.recall)}
        )


def rouge1(use_stemmer: bool = False, tokenizer: str = "default") -> MeanMetric:
    """Unigram-overlap F-measure."""
    return _Rouge("rouge1", use_stemmer, tokenizer)


def rouge2(use_stemmer: bool = False, tokenizer: str = "default") -> MeanMetric:
    """Bigram-overlap F-measure."""
    return _Rouge("rouge2", use_stemmer, tokenizer)


def rougeL(use_stemmer: bool = False, tokenizer: str = "default") -> MeanMetric:
    """Longest-common-subsequence F-measure over the whole text."""
    return _Rouge("rougeL", use_stemmer, tokenizer)


def rougeLsum(use_stemmer: bool = False, tokenizer: str = "default") -> MeanMetric:
    """Summary-level (union) LCS F-measure over newline-separated sentences."""
    return _Rouge("rougeLsum", use_stemmer, tokenizer)
