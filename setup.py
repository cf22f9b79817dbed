"""Build hook: the top-level tasks/, judges/, suites/ and reports/ folders (the source of truth)
are copied into the package as `evalharness/_builtin/<kind>/` at build time, so a wheel or an
sdist install finds them with importlib.resources. A checkout or an editable install reads the
top-level folders directly (evalharness/assets.py); nothing is copied into the source tree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUILTIN = ("tasks", "judges", "suites", "reports")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class BuildWithBuiltins(build_py):
    """build_py, plus the built-in asset folders under evalharness/_builtin/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's folders
        target = Path(self.build_lib) / "evalharness" / "_builtin"
        for kind in BUILTIN:
            src = ROOT / kind
            if not src.is_dir():
                raise SystemExit(f"setup.py: {src} is missing; build from a checkout or an sdist")
            shutil.rmtree(target / kind, ignore_errors=True)
            shutil.copytree(src, target / kind, ignore=SKIP)


setup(cmdclass={"build_py": BuildWithBuiltins})
