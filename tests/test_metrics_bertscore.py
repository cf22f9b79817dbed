"""BERTScore on the embedded all-MiniLM-L6-v2, offline: parity with bert_score.score, max over references."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalharness.errors import SpecError
from evalharness.metrics.base import build_metric, score_all
from evalharness.types import Output, Sample

CANDS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "He did not go to school today because he was sick.",
    "",
    "Die Katze sitzt auf der Matte.",
]
REFS = [
    ["The cat was sitting on the mat.", "There is a cat on the mat."],
    ["The quick brown fox jumped over the lazy dog."],
    ["France's capital is Paris.", "Paris.", "The capital city of France is Paris."],
    ["Being ill, he stayed home from school."],
    ["Nothing was said."],
    ["The cat sits on the mat."],
]


def _data() -> tuple[list[Sample], list[Output]]:
    samples = [Sample(id=str(i), fields={}, references=tuple(r)) for i, r in enumerate(REFS)]
    outputs = [Output(generations=(c,), extracted=(c,)) for c in CANDS]
    return samples, outputs


def test_default_encoder_is_the_embedded_minilm() -> None:
    from evalharness.metrics.bertscore import default_model_path

    folder = Path(default_model_path())
    config = json.loads((folder / "config.json").read_text())
    assert config["num_hidden_layers"] == 6 and config["hidden_size"] == 384
    assert (folder / "model.safetensors").is_file()


@pytest.mark.parametrize("num_layers", [None, 3])
def test_parity_with_bert_score(num_layers: int | None) -> None:
    import bert_score

    from evalharness.metrics.bertscore import default_model_path

    params = {} if num_layers is None else {"num_layers": num_layers}
    samples, outputs = _data()
    got = {name: [s.value for s in score_all(build_metric(name, params), samples, outputs)]
           for name in ("bertscore_precision", "bertscore_recall", "bertscore_f1", "bertscore")}
    # bert-score 0.3.13 crashes on "" under transformers 5, so the empty candidate is checked apart:
    # bert-score defines its score as 0.
    live = [i for i, c in enumerate(CANDS) if c]
    p, r, f = bert_score.score([CANDS[i] for i in live], [REFS[i] for i in live], model_type=default_model_path(),
                               num_layers=num_layers or 6)
    for name, ref in (("bertscore_precision", p), ("bertscore_recall", r), ("bertscore_f1", f), ("bertscore", f)):
        assert [got[name][i] for i in live] == pytest.approx(ref.tolist(), abs=1e-6)
        assert got[name][CANDS.index("")] == 0.0


def test_max_over_references_and_layer_matters() -> None:
    samples = [Sample(id="a", fields={}, references=("Completely unrelated words about taxes.", "The cat sat on the mat."))]
    outputs = [Output(generations=("The cat sat on the mat.",))]
    (score,) = score_all(build_metric("bertscore_f1"), samples, outputs)
    assert score.value == pytest.approx(1.0, abs=1e-5)
    assert score.extra["model"] == "all-MiniLM-L6-v2" and score.extra["layer"] == 6
    s2, o2 = _data()
    six = [s.value for s in score_all(build_metric("bertscore_f1"), s2, o2)]
    three = [s.value for s in score_all(build_metric("bertscore_f1", {"num_layers": 3}), s2, o2)]
    assert six != pytest.approx(three, abs=1e-3)


def test_empty_reference_among_several_is_ignored_by_the_max() -> None:
    samples = [Sample(id="a", fields={}, references=("", "The cat sat on the mat.")), Sample(id="b", fields={}, references=("  ",))]
    outputs = [Output(generations=("The cat sat on the mat.",)), Output(generations=("Anything.",))]
    scores = score_all(build_metric("bertscore_f1"), samples, outputs)
    assert scores[0].value == pytest.approx(1.0, abs=1e-5) and scores[1].value == 0.0


def test_three_components_share_one_encoder_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    from bert_score import BERTScorer

    from evalharness.metrics import bertscore

    calls = []
    real = BERTScorer.score

    def spy(self: BERTScorer, cands: list[str], refs: list[list[str]], **kw: object) -> object:
        calls.append(len(cands))
        return real(self, cands, refs, **kw)

    monkeypatch.setattr(BERTScorer, "score", spy)
    monkeypatch.setattr(bertscore, "_last", None)
    samples, outputs = _data()
    for name in ("bertscore_precision", "bertscore_recall", "bertscore_f1"):
        score_all(build_metric(name, {"batch_size": 4}), samples, outputs)
    # one batched call (every non-empty candidate-reference pair) for all samples and all three metrics
    assert calls == [sum(len(r) for c, r in zip(CANDS, REFS, strict=True) if c)]


def test_local_encoder_needs_a_layer(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="num_layers is required"):
        build_metric("bertscore", {"model_type": str(tmp_path)})


def test_importing_metrics_and_cli_does_not_import_torch() -> None:
    code = ("import sys, evalharness.cli.app as c, evalharness.metrics.bertscore, evalharness.metrics.passk; c.build_parser(); "
            "assert 'score' in c.COMMANDS; bad = {'torch', 'bert_score', 'transformers'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
