"""Answer extraction from a generation before scoring: regex, strip, lowercase."""

from __future__ import annotations

import functools
import re

from evalharness.spec.task import ExtractSpec


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)


def extract(text: str, spec: ExtractSpec) -> str:
    """Apply the task's extraction rule; an unmatched regex falls back to the raw text or ''."""
    out = text
    if spec.regex is not None:
        matches = list(_compiled(spec.regex).finditer(text))
        if matches:
            m = matches[0] if spec.match == "first" else matches[-1]
            group = spec.group if m.re.groups >= spec.group else 0
            out = m.group(group) or ""
        else:
            out = text if spec.fallback == "raw" else ""
    for s in spec.remove:
        out = out.replace(s, "")
    if spec.strip:
        out = out.strip()
    if spec.lowercase:
        out = out.lower()
    return out
