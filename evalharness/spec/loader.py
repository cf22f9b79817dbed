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


# Task, judge, suite, group and gate files are a few KB; past these limits a file is refused,
# by its size before parsing, and by its nodes (aliases counted at their expanded size) and
# nesting while it is parsed, so neither a huge file nor an alias bomb costs more than a moment.
MAX_YAML_BYTES = 2**20
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 100


class _YamlTooBig(Exception):
    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.problem_mark = mark


try:  # libyaml scans and parses about ten times faster; events and errors (with lines) are the same
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    class _Parser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class _BoundedLoader(yaml.composer.Composer, _Parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """yaml.SafeLoader's parts (Python tags are still an error), with a composer that counts nodes
    as it builds the node graph, before any Python object is constructed."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._nodes = 0
        self._depth = 0
        self._expanded: dict[int, int] = {}  # id(node) -> nodes it stands for, aliases expanded

    def _count(self, n: int) -> None:
        self._nodes += n
        if self._nodes > MAX_YAML_NODES:
            event: Any = self.peek_event()
            raise _YamlTooBig(f"YAML expands to more than {MAX_YAML_NODES:,} nodes (anchors/aliases nested too deep?)",
                              event.start_mark)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                if id(target) not in self._expanded:
                    raise _YamlTooBig(f"alias *{event.anchor} refers to a node that contains it", event.start_mark)
                self._count(self._expanded[id(target)])
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _YamlTooBig(f"YAML nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        before = self._nodes
        self._count(1)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._expanded[id(node)] = self._nodes - before
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """A mapping; a key written twice is an error (YAML says keys are unique; last-wins hides a typo).
        Keys brought in by a merge (`<<: *base`) may be overridden, as YAML intends."""
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue  # an unhashable key: SafeConstructor reports it
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _too_big(source: str, size: int) -> SpecError:
    return SpecError(f"{source}: {size:,} bytes, over the {MAX_YAML_BYTES // 2**20} MiB limit for a YAML file")


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML safely (no Python tags) and boundedly, with a one-line error naming the file and line."""
    if len(text) > MAX_YAML_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise _too_big(source, len(text.encode("utf-8", "surrogatepass")))
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except (yaml.YAMLError, _YamlTooBig) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        if isinstance(exc, _YamlTooBig):
            raise SpecError(f"{source}{where}: {exc}") from None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}{where}: invalid YAML: {problem}") from None
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as exc:  # bad explicit tags (`!!float x`)
        raise SpecError(f"{source}: invalid YAML: {type(exc).__name__}: {exc}") from None
    finally:
        loader.dispose()


def read_text(path: Path) -> str:
    """A YAML file's text; one over MAX_YAML_BYTES is refused before it is read."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES and path.is_file():
            raise _too_big(str(path), size)
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
    raise RegistryError(f"unknown {what} {name!r}{hint} (known: {', '.join(sorted(known)) or 'none'})")
