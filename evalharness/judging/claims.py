"""An answer's claims: its sentences, split deterministically (our own rules; no model, no downloaded data).

`per: claim` judges (judges/faithfulness.yaml) give each claim its own verdict. The rules, in order:

1. Lines. A blank line ends a claim. A single newline does too, unless the next line starts with
   a lowercase letter and the line does not end in `. ! ? … :` (a hard-wrapped sentence: the lines
   are joined). List markers (`-`, `*`, `•`, `1.`, `2)`, `(a)`), markdown headings (`#`) and quote
   marks (`>`) at a line's start are dropped. A lead-in line ending in `:` is not a claim of its own:
   it is put in front of each list item under it ("The causes were: drought"), or of the next line.
2. Sentences. Within a line a sentence ends at `.`, `!`, `?` or an ellipsis (`...`, `…`), with any
   closing quotes or brackets after it, then whitespace, then a sentence start; `。！？` end one
   outright. Not an end: a lowercase word next ("Wait... what?", "Yahoo! is"); an ellipsis before
   anything but a capital letter ("1... 2... 3..."); a period after a title or a word that is never
   sentence-final ("Dr.", "e.g.", "vs.", "et al.", "St."), after an initial or a dotted initialism
   ("J. R. R. Tolkien", "U.S.", "a.m.", "Ph.D."), after "No."/"p."/"Fig."/a month before a number.
   A period with no whitespace after it never ends one ("3.5", "example.com"). When in doubt the
   text is NOT split: a merged claim is judged whole (stricter), while a wrong split would send a
   judge nonsense fragments.
3. Fragments without a letter or digit ("...", "---", "**") are dropped: an answer of only
   punctuation or whitespace has no claims.
4. At most `max_claims` claims (32 by default, the judge's `max_claims`): the sentences past the
   last are merged into it, so every sentence is still judged (the last claim is supported only
   when all of them are), and `merged` counts the sentences merged.

Linear in the answer's length (no backtracking regex): a 1 MB answer splits in well under a second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from evalharness.spec.judge import DEFAULT_MAX_CLAIMS

_NEVER_FINAL = frozenset(
    "mr mrs ms mx dr prof sr jr st mt ft rev fr gen gov sen rep col capt lt sgt cmdr adm hon pres supt messrs "
    "e.g i.e cf vs viz approx ca c al dept univ assn est".split())
_BEFORE_NUMBER = frozenset(
    "no nos nr fig figs eq eqs vol vols p pp ch chap sec sect art para ed op "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split())
_INITIALISM = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}|[A-HJ-Z]")  # U.S, e.g, Ph.D, a.m; J (not "I")
_TERMINATORS = re.compile(r"[.!?…。！？]+")
_CLOSERS = "\"'”’»)]*_"
_OPENERS = "\"'“‘«([*_"
_MARKER = re.compile(r"(?:[-*+•‣◦▪●–—]\s+|\d{1,3}[.)]\s+|\(?[a-zA-Z]\)\s+|\(\d{1,3}\)\s+)")
_DECOR = re.compile(r"(?:#{1,6}\s+|>\s*)+")


@dataclass(frozen=True)
class Claims:
    """An answer's claims in order, and how many sentences past `max_claims` were merged into the last."""

    texts: tuple[str, ...]
    merged: int = 0


@dataclass
class _Line:
    text: str
    item: bool  # a list item (its marker dropped)


def _lines(text: str) -> list[_Line | None]:
    """The answer's lines, markers dropped; None for a blank line."""
    out: list[_Line | None] = []
    for raw in re.split(r"\r\n?|[\n\u2028\u2029\x0b\x0c\x85]", text):
        line = raw.strip()
        line = line[m.end():] if (m := _DECOR.match(line)) else line
        m = _MARKER.match(line)
        out.append(_Line(line[m.end():].strip(), True) if m else _Line(line, False) if line else None)
    return out


def _join_wrapped(lines: list[_Line | None]) -> list[_Line | None]:
    """A line that starts lowercase continues the line before it unless that one ended a sentence."""
    out: list[_Line | None] = []
    parts: list[list[str]] = []  # each kept line's pieces, joined once (no quadratic concatenation)
    for line in lines:
        prev = parts[-1] if out and out[-1] is not None else None
        if (line is not None and prev is not None and not line.item and line.text[:1].islower()
                and not prev[-1].endswith((".", "!", "?", "…", ":"))):
            prev.append(line.text)
        else:
            out.append(line)
            parts.append([line.text] if line is not None else [])
    for line, pieces in zip(out, parts, strict=True):
        if line is not None:
            line.text = " ".join(pieces)
    return out


def _blocks(lines: list[_Line | None]) -> list[str]:
    """Line texts with lead-ins ("The causes were:") put in front of the items (or line) under them."""
    blocks: list[str] = []
    lead: str | None = None
    in_items = False
    for line in lines:
        if line is None:
            continue
        if lead is not None and line.item:
            blocks.append(f"{lead} {line.text}")
            in_items = True
            continue
        if lead is not None and not in_items:
            line = _Line(f"{lead} {line.text}", False)
        lead, in_items = None, False
        if line.text.endswith(":"):  # its last sentence leads in; any before it stand alone
            *before, lead = sentences(line.text) or [line.text]
            blocks.extend(before)
        else:
            blocks.append(line.text)
    if lead is not None and not in_items:
        blocks.append(lead)  # a lead-in with nothing under it
    return blocks


def _word_before(text: str, end: int) -> str:
    start = end
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:end].lstrip(_OPENERS).rstrip(_CLOSERS)


def _period_ends(text: str, at: int, following: str) -> bool:
    """Whether the period at `at` ends a sentence, given the first character of what follows."""
    word = _word_before(text, at)
    low = word.lower()
    if low in _NEVER_FINAL or _INITIALISM.fullmatch(word):
        return False
    return not (following.isdigit() and low in _BEFORE_NUMBER)


def _ends(text: str, start: int, end: int) -> int | None:
    """Where the sentence ends if the terminator run text[start:end] ends it (after its closers), else None."""
    run = text[start:end]
    while end < len(text) and text[end] in _CLOSERS:
        end += 1
    if any(c in "。！？" for c in run):
        return end
    if end < len(text) and not text[end].isspace():
        return None
    nxt = end
    while nxt < len(text) and (text[nxt].isspace() or text[nxt] in _OPENERS):
        nxt += 1
    if nxt == len(text):
        return end
    following = text[nxt]
    if "!" in run or "?" in run:
        return None if following.islower() else end
    if "…" in run or len(run) > 1:
        return end if following.isupper() else None
    return None if following.islower() or not _period_ends(text, start, following) else end


def sentences(block: str) -> list[str]:
    """One block's sentences (rule 2), fragments without a letter or digit dropped."""
    out: list[str] = []
    begin = 0
    for m in _TERMINATORS.finditer(block):
        if m.start() < begin:
            continue
        end = _ends(block, m.start(), m.end())
        if end is not None:
            out.append(block[begin:end])
            begin = end
    out.append(block[begin:])
    return [s.strip() for s in out if any(c.isalnum() for c in s)]


def split_claims(answer: str, max_claims: int = DEFAULT_MAX_CLAIMS) -> Claims:
    """The answer's claims (see the module docstring); an empty or punctuation-only answer has none."""
    if not isinstance(answer, str):
        raise TypeError(f"split_claims: expected a string answer, got {type(answer).__name__}")
    if max_claims < 1:
        raise ValueError(f"max_claims must be at least 1, got {max_claims}")
    found = [s for block in _blocks(_join_wrapped(_lines(answer))) for s in sentences(block)]
    if len(found) <= max_claims:
        return Claims(tuple(found))
    head, tail = found[: max_claims - 1], found[max_claims - 1:]
    return Claims((*head, " ".join(tail)), merged=len(tail) - 1)
