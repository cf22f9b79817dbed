"""Built-in metrics, registered lazily by name.

Each entry is a `"module:factory"` string, so importing this package imports no scoring
library (sacrebleu, rouge-score, bert-score, torch); a metric's module loads on first use.
Factories take the task file's metric params as keyword arguments.
"""

from __future__ import annotations

from evalharness.errors import DataError
from evalharness.metrics.base import METRICS
from evalharness.types import Output, Sample

_BUILTIN: dict[str, str] = {
    # SQuAD v1.1 / v2.0 (0-100 scale); param: version
    "exact_match": "squad:exact_match",
    "f1": "squad:f1",
    # lm-evaluation-harness multiple choice
    "acc": "choice:acc",
    "acc_norm": "choice:acc_norm",
    "acc_bytes": "choice:acc_bytes",
    # lm-evaluation-harness perplexity family
    "word_perplexity": "perplexity:word_perplexity",
    "byte_perplexity": "perplexity:byte_perplexity",
    "bits_per_byte": "perplexity:bits_per_byte",
    "token_perplexity": "perplexity:token_perplexity",
    # sacrebleu, corpus level
    "bleu": "translation:bleu",
    "chrf": "translation:chrf",
    "chrf++": "translation:chrf_plus_plus",
    "ter": "translation:ter",
    # rouge-score
    "rouge1": "rouge:rouge1",
    "rouge2": "rouge:rouge2",
    "rougeL": "rouge:rougeL",
    "rougeLsum": "rouge:rougeLsum",
    # bert-score
    "bertscore": "bertscore:bertscore",
    "bertscore_f1": "bertscore:bertscore_f1",
    "bertscore_precision": "bertscore:bertscore_precision",
    "bertscore_recall": "bertscore:bertscore_recall",
    # functional correctness of generated code (runs in evalharness.metrics.sandbox)
    "pass_at_k": "passk:pass_at_k",
    "pass@1": "passk:pass_at_1",
    "pass@10": "passk:pass_at_10",
    # semantic textual similarity (kind: sts): correlation of the pairs' cosines with the gold scores
    "spearman": "sts:spearman",
    "pearson": "sts:pearson",
    # TruthfulQA MC2 (lm-eval truthfulqa_mc2): probability mass on the true answers
    "mc2": "truthfulqa:mc2",
}

for _name, _target in _BUILTIN.items():
    METRICS.register(_name, f"evalharness.metrics.{_target}")
# retrieval on ranked ids (trec_eval definitions): recall@k, precision@k, hit_rate@k, mrr@k, ndcg@k for any k >= 1
for _family in ("recall", "precision", "hit_rate", "mrr", "ndcg"):
    METRICS.register_family(_family, f"evalharness.metrics.retrieval:{_family}")
METRICS.register("map", "evalharness.metrics.retrieval:mean_average_precision")
# an LLM judge from judges/ as a metric: {name: judge, params: {judge: NAME}}; needs --judge-model
METRICS.register("judge", "evalharness.judging.metric:judge_metric")


def first_answer(output: Output) -> str:
    """The answer single-answer metrics score: the first extracted answer, else the raw text."""
    if output.extracted:
        return output.extracted[0]
    if output.generations:
        return output.generations[0]
    return ""


def require_references(sample: Sample, metric: str) -> tuple[str, ...]:
    """The sample's references, or a DataError naming the sample when it has none."""
    if not sample.references:
        raise DataError(f"metric {metric!r}: sample {sample.id!r} has no references")
    return sample.references


__all__ = ["METRICS", "first_answer", "require_references"]
