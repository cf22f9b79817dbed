"""Strict verdict parsing, one documented format per judge mode, and the retry reminder.

Formats (the verdict is always taken from the END of the judge's reply; text before it is
the judge's reasoning and is never searched for a verdict):

    bracket_rating   the LAST `[[...]]` in the reply holds a number (integer or decimal,
                     e.g. `[[7]]`, `[[7.5]]`) inside the judge's scale. `[[7/10]]`, `[[seven]]`,
                     `[[11]]` on a 1-10 scale are unparseable; an earlier `[[...]]` is never used.
                     A scale with `integer: true` takes whole numbers only (`[[0.5]]` is
                     unparseable for a 0/1 claim verdict).
    bracket_choice   the LAST `[[...]]` holds exactly `A`, `B` or `C` (C = tie).
    bracket_ranking  the LAST `[[...]]` lists every answer label once, best first, separated
                     by commas or `>`: `[[B, A, C]]` or `[[B > A > C]]`.
    json_criteria    the LAST JSON object in the reply (or the whole reply under structured
                     output) has one number per criterion, each in that criterion's scale; the
                     only other key allowed is `explanation`.

The answers under judgment are passed through `neutralize` before they reach the prompt:
`[[`/`]]` become `[ [`/`] ]` and `[The Start of ...`/`[The End of ...` delimiters are defused,
so an answer cannot forge a verdict token a judge might echo, nor close its own delimiter.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from evalharness.spec.judge import JudgeSpec

_BRACKETS = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_WHOLE = re.compile(r"[+-]?\d+")
_LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Verdict:
    """A parsed verdict (`ok`) with its value, or why it did not parse."""

    ok: bool
    value: Any = None
    reason: str = ""


def neutralize(text: str) -> str:
    """Defuse verdict tokens and answer delimiters in untrusted text (answers, references, context)."""
    text = re.sub(r"\[(?=\s*\[)", "[ ", text)
    text = re.sub(r"\](?=\s*\])", "] ", text)
    return re.sub(r"\[(?=\s*The (?:Start|End) of)", "(", text, flags=re.IGNORECASE)


def labels(n: int) -> list[str]:
    return list(_LABELS[:n])


def _last_bracket(text: str) -> str | None:
    found = _BRACKETS.findall(text)
    return found[-1].strip() if found else None


def parse_rating(text: str, lo: float, hi: float, integer: bool = False) -> Verdict:
    inner = _last_bracket(text)
    if inner is None:
        return Verdict(False, reason="no [[rating]] found")
    if not _NUMBER.fullmatch(inner):
        return Verdict(False, reason=f"[[{inner}]] is not a number")
    if integer and not _WHOLE.fullmatch(inner):
        return Verdict(False, reason=f"[[{inner}]] is not a whole number (the scale takes {lo:g}-{hi:g} in steps of 1)")
    value = float(inner)
    if not (lo <= value <= hi):
        return Verdict(False, reason=f"[[{inner}]] is outside the scale {lo:g}-{hi:g}")
    return Verdict(True, value)


def parse_choice(text: str) -> Verdict:
    inner = _last_bracket(text)
    if inner is None:
        return Verdict(False, reason="no [[A]]/[[B]]/[[C]] found")
    if inner not in {"A", "B", "C"}:
        return Verdict(False, reason=f"[[{inner}]] is not A, B or C")
    return Verdict(True, inner)


def parse_ranking(text: str, n: int) -> Verdict:
    inner = _last_bracket(text)
    if inner is None:
        return Verdict(False, reason="no [[ranking]] found")
    parts = [p.strip() for p in re.split(r"[,>]", inner)]
    expected = labels(n)
    if sorted(parts) != expected:
        return Verdict(False, reason=f"[[{inner}]] is not a ranking of {', '.join(expected)} (each once)")
    return Verdict(True, parts)


def _json_objects(text: str) -> list[Any]:
    """Top-level JSON objects in `text`, in order."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    i = 0
    while True:
        i = text.find("{", i)
        if i < 0:
            return found
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        found.append(obj)
        i = end


def parse_criteria(text: str, spec: JudgeSpec) -> Verdict:
    objs = [o for o in _json_objects(text) if isinstance(o, dict)]
    if not objs:
        return Verdict(False, reason="no JSON object found")
    obj = objs[-1]
    names = [c.name for c in spec.criteria]
    extra = sorted(set(obj) - set(names) - {"explanation"})
    if extra:
        return Verdict(False, reason=f"unexpected key(s) {', '.join(extra)} (expected {', '.join(names)})")
    missing = [n for n in names if n not in obj]
    if missing:
        return Verdict(False, reason=f"missing criteria {', '.join(missing)}")
    out: dict[str, float] = {}
    for c in spec.criteria:
        v = obj[c.name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return Verdict(False, reason=f"{c.name}: {v!r} is not a number")
        if not (c.scale.min <= v <= c.scale.max):
            return Verdict(False, reason=f"{c.name}: {v} is outside {c.scale.min}-{c.scale.max}")
        out[c.name] = float(v)
    return Verdict(True, out)


def parse(text: str, spec: JudgeSpec, n_answers: int = 2) -> Verdict:
    """Parse a judge reply with the judge's verdict format."""
    fmt = spec.format
    if fmt == "bracket_rating":
        return parse_rating(text, spec.scale.min, spec.scale.max, spec.scale.integer)
    if fmt == "bracket_choice":
        return parse_choice(text)
    if fmt == "bracket_ranking":
        return parse_ranking(text, n_answers)
    return parse_criteria(text, spec)


def reminder(spec: JudgeSpec, n_answers: int = 2) -> str:
    """The retry message sent after an unparseable reply."""
    if spec.verdict.reminder:
        return spec.verdict.reminder
    head = "Your reply did not end with a verdict in the required format. "
    fmt = spec.format
    if fmt == "bracket_rating":
        lo, hi = spec.scale.min, spec.scale.max
        kind = "a whole number" if spec.scale.integer else "a number"
        return head + f"Give your final rating now as [[N]], N {kind} from {lo} to {hi}, e.g. [[{lo}]]."
    if fmt == "bracket_choice":
        return head + "Give your final verdict now: [[A]] if answer A is better, [[B]] if answer B is better, [[C]] for a tie."
    if fmt == "bracket_ranking":
        ls = labels(n_answers)
        return head + f"Give your final ranking now as [[{', '.join(ls)}]] reordered best first, listing each of {', '.join(ls)} once."
    keys = ", ".join(f'"{c.name}": {c.scale.min}-{c.scale.max}' for c in spec.criteria)
    return head + f"Reply now with only one JSON object with these keys and integer values: {{{keys}}}."


def json_schema(spec: JudgeSpec) -> dict[str, Any] | None:
    """The JSON schema of a structured verdict (rubric judges), for backends with `supports_json_schema`."""
    if spec.format != "json_criteria":
        return None
    props: dict[str, Any] = {"explanation": {"type": "string"}}
    for c in spec.criteria:
        props[c.name] = {"type": "integer", "minimum": c.scale.min, "maximum": c.scale.max}
    return {
        "type": "object",
        "properties": props,
        "required": ["explanation", *[c.name for c in spec.criteria]],
        "additionalProperties": False,
    }
