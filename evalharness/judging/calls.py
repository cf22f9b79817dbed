"""What judging works on and produces: the item to judge, one judge call, the judgment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evalharness.judging.verdicts import Verdict


@dataclass(frozen=True)
class JudgeItem:
    """One thing to judge. `answers[0]` is the answer under test; pairwise/ranking compare all answers."""

    id: str
    answers: tuple[str, ...]
    question: str = ""
    reference: str | None = None
    context: str | None = None
    claim: str | None = None  # per: claim judges: the one claim of answers[0] being judged


@dataclass
class Call:
    """One judge verdict (after at most one retry)."""

    order: tuple[int, ...]  # answer indices in prompt order
    repeat: int
    verdict: Verdict
    raw: str
    retried: bool = False
    first_raw: str | None = None
    error: str | None = None
    # verdict: likelihood: the normalised distribution over the allowed verdicts (rubric: one per
    # criterion) and the expected value (rating; rubric: per criterion; pairwise: win share of answers[0])
    dist: dict[str, Any] | None = None
    expected: Any = None


@dataclass
class Judgment:
    """The outcome for one item.

    status: parsed | unparseable | inconsistent (pairwise, excluded) | error (backend failure).
    value: on the judge's scale (single, reference, rubric) or the win share of answers[0] (0-1).
    """

    id: str
    status: str
    value: float | None
    calls: list[Call]
    criteria: dict[str, float] | None = None
    ranking: list[int] | None = None  # answer indices best first (ranking mode, first repeat)
    consistent: bool | None = None  # pairwise: both orders agreed (all repeats)
    flaky: bool = False  # repeats disagree
    repeat_verdicts: list[Any] = field(default_factory=list)
    method: str = "generate"  # how verdicts were read: generate (parsed text) or likelihood
    likelihood: dict[str, Any] | None = None  # distributions and expected values (verdict: likelihood)

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "retried": any(c.retried for c in self.calls)}
        if self.method != "generate":
            out["verdict_method"] = self.method
        if self.status in {"unparseable", "error"}:
            out["raw"] = [c.raw for c in self.calls]
            out["first_raw"] = [c.first_raw for c in self.calls if c.retried]
            out["reason"] = [c.error or c.verdict.reason for c in self.calls if not c.verdict.ok]
        else:
            out["verdicts"] = [c.verdict.value for c in self.calls]
            text = "\n\n".join(c.raw for c in self.calls if isinstance(c.raw, str) and c.raw.strip())
            if text:  # the judge's own words: what a reader of the report needs to trust or doubt the verdict
                out["explanation"] = text
        if self.criteria is not None:
            out["criteria"] = self.criteria
        if self.consistent is not None:
            out["consistent"] = self.consistent
            out["inconsistent"] = not self.consistent
        if self.ranking is not None:
            out["ranking"] = self.ranking
        if len(self.repeat_verdicts) > 1:
            out["repeat_verdicts"] = self.repeat_verdicts
            out["flaky"] = self.flaky
        if self.likelihood:
            out.update(self.likelihood)
        return out
