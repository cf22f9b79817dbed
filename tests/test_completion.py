"""`evalharness completion`: the generated scripts really complete in a shell (bash run for real)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evalharness.cli import main
from evalharness.cli.app import build_parser
from evalharness.cli.completion import script

BASH = shutil.which("bash")


def _complete(tmp_path: Path, *words: str) -> list[str]:
    """What bash offers for the last of `words` (the word being typed), with the generated script loaded."""
    path = tmp_path / "evalharness.bash"
    if not path.exists():
        path.write_text(script(build_parser(), "bash"))
    line = " ".join(f"'{w}'" for w in words)
    body = (f"source '{path}'; COMP_WORDS=(evalharness {line}); COMP_CWORD={len(words)}; "
            "_shtab_evalharness; printf '%s\\n' \"${COMPREPLY[@]}\"")
    out = subprocess.run([BASH, "-c", body], capture_output=True, text=True, check=True, timeout=60)
    return [x for x in out.stdout.splitlines() if x]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_completes_commands_flags_tasks_and_backends(tmp_path: Path) -> None:
    assert _complete(tmp_path, "re") == ["report"]
    assert "completion" in _complete(tmp_path, "")
    assert {"--model", "--model-args", "--model_args"} <= set(_complete(tmp_path, "run", "--mod"))
    assert _complete(tmp_path, "run", "--tasks", "arc_e") == ["arc_easy"]
    # after a comma: the name being typed completes, the names before it stay
    assert _complete(tmp_path, "run", "--tasks", "arc_easy,mmlu_anat") == ["arc_easy,mmlu_anatomy"]
    assert "mmlu" in _complete(tmp_path, "run", "--tasks", "mml")  # groups too
    assert set(_complete(tmp_path, "run", "--model", "openai-")) == {"openai-chat", "openai-completions",
                                                                     "openai-embeddings"}
    assert _complete(tmp_path, "list", "ju") == ["judges"]
    assert _complete(tmp_path, "report", "--format", "m") == ["md"]


def test_zsh_and_tcsh_scripts_name_the_commands_and_tasks() -> None:
    zsh = script(build_parser(), "zsh")
    assert "_values -s , task" in zsh and " arc_easy " in zsh and "completion" in zsh
    if shutil.which("zsh"):
        subprocess.run(["zsh", "-n", "-c", zsh], check=True, timeout=60)  # the script parses
    tcsh = script(build_parser(), "tcsh")
    assert "complete evalharness" in tcsh and "report" in tcsh


def test_completion_command_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert "_shtab_evalharness" in out and "_evalharness_task_names" in out


def test_unknown_shell_and_missing_shtab_are_one_line_errors(capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["completion", "fish"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'fish'" in err
    monkeypatch.setitem(sys.modules, "shtab", None)  # import shtab -> ImportError
    assert main(["completion", "bash"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: shell completion needs the shtab package: pip install shtab"
