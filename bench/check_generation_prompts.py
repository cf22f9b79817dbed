"""Check that xsum, flores_en_ms and mbpp send lm-evaluation-harness's prompts, sample for sample (no model).

Two steps, since lm-eval and evalharness live in different environments:

    # 1. with lm-eval 0.4.x (and, for xsum, unitxt 1.26) installed: lm-eval's own task classes build
    #    every generate request from the vendored files
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 <lm-eval python> bench/check_generation_prompts.py dump /tmp/lmeval_gen.json
    # 2. with evalharness: compare every prompt, stop list and reference
    python bench/check_generation_prompts.py compare /tmp/lmeval_gen.json

- mbpp: lm-eval's lm_eval/tasks/mbpp/mbpp.yaml with its 3-shot exemplars, data from tasks/data
  (its utils.py loads Hugging Face `evaluate`'s code_eval at import, which needs the network: a stub
  stands in for it; it is only used to score).
- xsum: lm-eval's Unitxt task class (lm_eval/tasks/unitxt/task.py) with the recipe of its xsum.yaml,
  whose card `cards.xsum` is rebuilt over the vendored rows (same task, preprocessing and template;
  the card's loader reads the hub).
- flores_en_ms: lm-eval has no English-Malay FLORES task; its catalan_bench_flores_en-ca task file
  with Catalan replaced by Malay (cat_Latn -> zsm_Latn) is the reference.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tasks" / "data"
XSUM_TEMPLATE = "templates.summarization.abstractive.full"


def _local(path: Path) -> dict[str, Any]:
    return {"dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": {"test": str(path)}},
            "training_split": None, "validation_split": None, "fewshot_split": None}


def _resolve(value: Any, folder: Path) -> Any:
    """`!function` tags nested below the top level (check_library_prompts resolves only top-level ones)."""
    if isinstance(value, tuple) and value[0] == "!function":
        module_name, attr = value[1].rsplit(".", 1)
        spec = importlib.util.spec_from_file_location(f"lmeval_{folder.name}_{module_name}", folder / f"{module_name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, attr)
    if isinstance(value, dict):
        return {k: _resolve(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, folder) for v in value]
    return value


def _requests(task: Any, num_fewshot: int) -> list[dict[str, Any]]:
    out = []
    for i, doc in enumerate(task.test_docs()):
        ctx = task.fewshot_context(doc, num_fewshot=num_fewshot)
        reqs = task.construct_requests(doc, ctx, metadata=("check", i, 0))
        (req,) = reqs if isinstance(reqs, list) else [reqs]
        context, gen_kwargs = req.args
        out.append({"context": context, "until": list(gen_kwargs["until"]), "target": task.doc_to_target(doc)})
    return out


def _mbpp(tasks: Path) -> list[dict[str, Any]]:
    from lm_eval.api.task import ConfigurableTask

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from check_library_prompts import _lmeval_config

    class _CodeEval:
        def compute(self, **_: Any) -> tuple[dict[str, float], dict[str, Any]]:
            return {"pass@1": 0.0}, {}

    stub = types.ModuleType("evaluate")
    stub.load = lambda *_a, **_k: _CodeEval()  # type: ignore[attr-defined]
    real = sys.modules.get("evaluate")
    sys.modules["evaluate"] = stub
    try:
        cfg = _resolve(_lmeval_config(tasks / "mbpp" / "mbpp.yaml"), tasks / "mbpp")
    finally:
        if real is None:
            del sys.modules["evaluate"]
        else:
            sys.modules["evaluate"] = real
    cfg.update(_local(DATA / "mbpp_test.jsonl"))
    return _requests(ConfigurableTask(config=cfg), 3)


def _flores(tasks: Path) -> list[dict[str, Any]]:
    from lm_eval.api.task import ConfigurableTask

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from check_library_prompts import _lmeval_config

    cfg = _lmeval_config(tasks / "catalan_bench" / "flores_ca" / "flores_en-ca.yaml")
    for key in ("doc_to_text", "doc_to_target"):
        cfg[key] = cfg[key].replace("cat_Latn", "zsm_Latn").replace("Catalan", "Malay")
    cfg.update(_local(DATA / "flores_en_ms_devtest.jsonl"), task="flores_en-ms", test_split="test")
    return _requests(ConfigurableTask(config=cfg), 0)


def _xsum(tasks: Path) -> list[dict[str, Any]]:
    import yaml
    from unitxt import load_dataset
    from unitxt.artifact import fetch_artifact
    from unitxt.card import TaskCard
    from unitxt.loaders import LoadFromDictionary

    recipe = yaml.safe_load((tasks / "unitxt" / "xsum.yaml").read_text(encoding="utf-8"))["recipe"]
    assert recipe == f"card=cards.xsum,template={XSUM_TEMPLATE}", recipe
    hub_card, _ = fetch_artifact("cards.xsum")
    rows = [json.loads(x) for x in (DATA / "xsum_test.jsonl").read_text(encoding="utf-8").splitlines()]
    card = TaskCard(loader=LoadFromDictionary(data={"test": rows}), task=hub_card.task, preprocess_steps=hub_card.preprocess_steps)

    spec = importlib.util.spec_from_file_location("lmeval_unitxt_task", tasks / "unitxt" / "task.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class LocalXsum(module.Unitxt):  # type: ignore[misc, name-defined]
        def download(self, dataset_kwargs: dict[str, Any] | None = None) -> None:
            self.dataset = load_dataset(card=card, template=XSUM_TEMPLATE, use_cache=False)

    return _requests(LocalXsum(config={"recipe": recipe, "task": "xsum"}), 0)


def dump(out: Path) -> None:
    import lm_eval

    tasks = Path(lm_eval.__file__).parent / "tasks"
    res = {"mbpp": _mbpp(tasks), "flores_en_ms": _flores(tasks), "xsum": _xsum(tasks)}
    out.write_text(json.dumps(res), encoding="utf-8")
    print(f"{out}: {sum(len(v) for v in res.values())} samples over {len(res)} tasks (lm-eval {lm_eval.__version__})")


def compare(ref_path: Path) -> int:
    from evalharness.data.samples import fewshot_pool, load_samples
    from evalharness.prompting.requests import render_prompt, requests_for
    from evalharness.spec.task import load_task_file

    ref: dict[str, list[dict[str, Any]]] = json.loads(ref_path.read_text(encoding="utf-8"))
    compared = mismatched = 0
    for name, rows in ref.items():
        task = load_task_file(ROOT / "tasks" / f"{name}.yaml")
        assert task.spec.prompt is not None
        samples = load_samples(task)
        pool = fewshot_pool(task, task.spec.prompt.fewshot.k)
        if len(rows) != len(samples):
            print(f"{name}: {len(samples)} samples here, {len(rows)} in lm-eval")
            mismatched += 1
            continue
        for i, (sample, row) in enumerate(zip(samples, rows, strict=True)):
            (req,) = requests_for(task, sample, render_prompt(task, sample, i, pool, None, chat=False))
            assert req.gen is not None
            # lm-eval scores mbpp's generation against the joined asserts; ours reads them from `test`
            target = sample.fields["test"] if name == "mbpp" else sample.references[0]
            compared += 1
            if req.prompt != row["context"] or list(req.gen.stop) != row["until"] or target != row["target"]:
                mismatched += 1
                if mismatched <= 5:
                    print(f"{name} {sample.id}: ours {req.prompt!r:.300} stop {req.gen.stop} target {target!r:.100}")
                    print(f"  lm-eval {row['context']!r:.300} until {row['until']} target {row['target']!r:.100}")
    print(f"compared {compared} samples: {mismatched} differ")
    return 1 if mismatched else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    d = sub.add_parser("dump", help="write lm-eval's requests (run with lm-eval and unitxt installed)")
    d.add_argument("output", type=Path)
    c = sub.add_parser("compare", help="compare evalharness's requests with a dump")
    c.add_argument("reference", type=Path)
    args = ap.parse_args()
    if args.step == "dump":
        dump(args.output)
        return 0
    sys.path.insert(0, str(ROOT))
    return compare(args.reference)


if __name__ == "__main__":
    sys.exit(main())
