"""The built wheel, installed (not editable) into a fresh venv and used from a folder outside the
checkout: the README's "Install from a wheel / PyPI" block, a built-in judge, the Python API.

Slow lane (about a minute: a wheel build and pip installs from the pip cache); `.ci/run` runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv*", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "bench")

pytestmark = pytest.mark.slow


def _readme_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Install from a wheel / PyPI", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "README: no bash block under 'Install from a wheel / PyPI'"
    return match.group(1)


def _sh(cmd: list[str] | str, env: dict[str, str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, cwd=cwd, shell=isinstance(cmd, str), capture_output=True, text=True, timeout=600,
                          executable="/bin/bash" if isinstance(cmd, str) else None)
    if ok:
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_wheel_in_a_fresh_venv_works_outside_the_checkout(tmp_path: Path) -> None:
    src, home = tmp_path / "src", tmp_path / "home"
    shutil.copytree(REPO, src, ignore=SKIP)
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "EVALHARNESS_HOME": str(home / ".eh")}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    proc = _sh("set -euo pipefail\n" + _readme_block(), env, src)
    assert "mmlu" in proc.stdout  # `list groups`
    bin_ = home / "evalharness-env" / "bin"
    results = json.loads((home / "eh-demo" / "results.json").read_text())
    assert set(results["tasks"]) >= {"arc_easy", "mmlu_anatomy"} and "mmlu" in results["groups"]
    assert "<html" in (home / "eh-demo" / "report.html").read_text()[:500].lower()
    # the package runs from site-packages, not from the copied checkout
    where = _sh([str(bin_ / "python"), "-c", "import evalharness.assets as a; print(a.builtin_dir('tasks'))"], env, home).stdout
    assert "site-packages" in where and "_builtin" in where
    assert "usage: evalharness" in _sh([str(bin_ / "python"), "-m", "evalharness", "--help"], env, home).stdout
    assert "arc_easy" in _sh([str(bin_ / "evalharness"), "list", "tasks"], env, home).stdout
    # shell completion from the installed package (shtab comes with it), built-in task names included
    assert " arc_easy " in _sh([str(bin_ / "evalharness"), "completion", "bash"], env, home).stdout
    # the built-in suite by name (and by the README's path) from a folder with no suites/ in it
    found = _sh([str(bin_ / "python"), "-c", "from evalharness.spec.suite import find_suite as f; "
                 "print(f('demo').path, f('suites/demo.yaml').path)"], env, home).stdout.split()
    assert len(found) == 2 and all("site-packages" in p and p.endswith("demo.yaml") for p in found), found
    # a built-in judge on a predictions file
    (home / "p.jsonl").write_text(json.dumps({"id": "a", "prediction": "Paris", "prompt": "Capital of France?"}) + "\n")
    _sh([str(bin_ / "evalharness"), "score", "--predictions", "p.jsonl", "--judge", "mt_bench_single", "--judge-model", "fake",
         "--judge-model-args", "output=Rating: [[7]]", "--output", "judged", "--no-cache"], env, home)
    judged = json.loads((home / "judged" / "results.json").read_text())["tasks"]["p"]["metrics"]["mt_bench_single"]
    assert judged["value"] == 7.0
    # lm-eval spellings, and one line + exit 2 for a misspelt flag or another model's folder
    _sh([str(bin_ / "evalharness"), "run", "--model", "fake", "--model_args", "output=A", "--num_fewshot", "0", "--batch_size", "2",
         "--output_path", "lm", "--tasks", "arc_easy", "--limit", "3", "--no-progress"], env, home)
    for argv in (["--tasks", "arc_easy", "--num_fewshots", "0"], ["--tasks", "arc_easy", "--limit", "3", "--output", "lm"]):
        bad = _sh([str(bin_ / "evalharness"), "run", "--model", "fake", *argv], env, home, ok=False)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    # the Python API (pandas added, as the README says)
    _sh([str(bin_ / "pip"), "install", "-q", "pandas"], env, home)
    api = """
import evalharness
r = evalharness.evaluate(tasks=["arc_easy"], model="fake", limit=5)
df, s = r.to_pandas(), r.samples("arc_easy")
assert df.shape[0] == 2 and {"task", "metric", "value", "ci_low", "ci_high", "stderr", "n", "higher_is_better"} <= set(df.columns)
assert len(s) == 5 and {"id", "prompt", "target", "output", "extracted", "acc"} <= set(s.columns)
sc = evalharness.score(predictions=["a", "b"], references=[["a"], ["c"]], metrics=["exact_match"])
assert sc.to_pandas().loc[0, "value"] == 50.0
print("api ok")
"""
    assert "api ok" in _sh([str(bin_ / "python"), "-c", api], env, home).stdout
