"""The command line: one module per command over the Python API (`evalharness.cli:main`)."""

from __future__ import annotations

from evalharness.cli.app import main

__all__ = ["main"]
