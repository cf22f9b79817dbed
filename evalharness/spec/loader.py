"""The one loader of the YAML families (task, group, suite, judge, gate config).

Each family is a pydantic model with `extra="forbid"`; this module reads the file (UTF-8,
one line on failure), parses it safely (no Python tags; alias bombs and deep nesting refused),
validates it against the family's model and hashes the text. Every error names the file and
the field; an unknown key gets a "did you mean" drawn from the keys of the model being
validated. `find_yaml` resolves a built-in name or a path, with the same hint for names.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from evalharness.errors import RegistryError, SpecError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def model_keys(model: type[BaseModel]) -> set[str]:
    """Every field name of `model` and of the models nested in its fields (for "did you mean")."""
    keys: set[str] = set()
    stack: list[Any] = [model]
    seen: set[Any] = set()
    while stack:
        tp = stack.pop()
        if tp in seen:
            continue
        seen.add(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            for name, f in tp.model_fields.items():
                keys.add(name)
                if f.alias:
                    keys.add(f.alias)
                stack.append(f.annotation)
        elif get_origin(tp) is not None or get_args(tp):
            stack.extend(get_args(tp))
    return keys


def format_validation_error(source: str, exc: ValidationError, model: type[BaseModel]) -> str:
    """One line: the file, then up to three `field: problem` parts (unknown keys first, with a hint)."""
    parts = []
    # Unknown keys first: a typo also makes the intended key "missing"; the typo is the news.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), model_keys(model), n=1)
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif err["type"] == "missing":
            msg = "required field missing"
        elif err["type"] == "value_error":  # our validators' messages already name their field
            msg = msg.removeprefix("Value error, ").removeprefix(f"{err['loc'][-1]}: " if err["loc"] else "")
            if loc == "<root>" and ": " in msg:
                parts.append(msg)
                continue
        parts.append(f"{loc}: {msg}")
    more = f" (+{len(exc.errors()) - 3} more)" if len(exc.errors()) > 3 else ""
    return f"{source}: " + "; ".join(parts) + more


MAX_YAML_NODES = 100_000


def _count_nodes(data: Any, limit: int) -> int:
    """Nodes of the parsed document with aliases expanded (an alias bomb explodes here, not later)."""
    seen: dict[int, int] = {}

    def count(node: Any, depth: int) -> int:
        if depth > 200:
            raise RecursionError("nesting deeper than 200 levels")
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) in seen:
            return seen[id(node)]
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += count(child, depth + 1)
            if total > limit:
                break
        seen[id(node)] = total
        return total

    return count(data, 0)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML safely (no Python tags) with a one-line error naming the file and line."""
    try:
        data = yaml.safe_load(text)
        if _count_nodes(data, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise SpecError(f"{source}: YAML expands to more than {MAX_YAML_NODES:,} nodes (anchors/aliases nested too deep?)")
        return data
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}{where}: invalid YAML: {problem}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # bad explicit tags (`!!float x`), deep nesting
        raise SpecError(f"{source}: invalid YAML: {type(exc).__name__}: {exc}") from None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None


def file_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def validate(model: type[M], data: Any, source: str, what: str) -> M:
    """`data` (a parsed document) as a `model`; `what` names the family in the top-level error."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of {what} fields at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(source, exc, model)) from None


def load_text(model: type[M], text: str, source: str, what: str) -> tuple[M, str]:
    """Parse and validate YAML text; returns the spec and the text's content hash."""
    return validate(model, parse_yaml(text, source), source, what), file_hash(text)


def load_file(model: type[M], path: Path, what: str) -> tuple[M, str]:
    """Read, parse and validate one YAML file; returns the spec and the file's content hash."""
    return load_text(model, read_text(path), str(path), what)


def yaml_files(dirs: list[Path]) -> dict[str, Path]:
    """Built-in names (file stems) -> files, the first folder winning."""
    found: dict[str, Path] = {}
    for d in dirs:
        for p in sorted(d.glob("*.yaml")):
            found.setdefault(p.stem, p)
    return found


def is_path(name_or_path: str) -> bool:
    """Whether a `--tasks`/`--judge` entry names a file rather than a built-in."""
    return Path(name_or_path).suffix in {".yaml", ".yml"} or os.sep in name_or_path


def find_yaml(name: str, known: dict[str, Path], what: str) -> Path:
    """The file of built-in `name`; unknown names get a "did you mean" and the list of built-ins."""
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise RegistryError(f"unknown {what} {name!r}{hint} (built-in: {', '.join(sorted(known)) or 'none'})")
