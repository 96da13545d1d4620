"""YAML config files bound to dataclasses, with errors that say file:line, key and expectation.

Installers edit these files by hand on a gateway; "invalid config" is not an
answer. Every config in cityedge (agent, collector, rules) is a tree of frozen
dataclasses, and ``load(path, cls)`` checks types, required keys, unknown keys
(typos), enum values (``Literal``) and numeric bounds (``field(metadata=...)``)
before any connection is made.

Secrets need not be written into these files:
- ``${NAME}`` in a string value (the whole value or part of it) is replaced by
  the environment variable NAME; ``${NAME:-default}`` gives a default when it
  is unset or empty; ``$${`` stands for a literal ``${``. An unset variable is
  an error at the value's file:line that names it. The result is a string.
- ``foo_file: PATH`` sets key ``foo`` to the content of the file at PATH (one
  trailing newline removed; relative to the config file's folder), for any key
  ``foo`` of a mapping that has no key ``foo_file`` of its own. Giving both, or
  a file that cannot be read, is an error at that line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")
KeyPath = tuple[str | int, ...]


class ConfigError(ValueError):
    """A config file is wrong; the message names file:line, key path and what was expected.

    One error may stand for several (``errors``, in file order, one line each in the
    message): a file is checked whole, so an installer fixes every mistake in one go.
    ``file``, ``line``, ``path`` and ``message`` are the first one's."""

    def __init__(self, file: str, line: int | None, path: KeyPath, message: str) -> None:
        self.file, self.line, self.path, self.message = file, line, path, message
        self.errors: tuple[ConfigError, ...] = (self,)
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {format_path(path) or '<top>'}: {message}")

    @staticmethod
    def combine(errors: list[ConfigError]) -> ConfigError:
        """One error for all of ``errors`` (itself when there is one)."""
        flat = sorted((e for error in errors for e in error.errors),
                      key=lambda e: (e.file, e.line or 0))
        if len(flat) == 1:
            return flat[0]
        first = flat[0]
        combined = ConfigError(first.file, first.line, first.path, first.message)
        combined.errors = tuple(flat)
        combined.args = ("\n".join(str(e) for e in flat),)
        return combined


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class Located:
    """Parsed YAML plus the line of every key path, for error messages."""

    def __init__(self, file: str, data: Any, lines: dict[KeyPath, int]) -> None:
        self.file, self.data, self.lines = file, data, lines

    def line(self, path: KeyPath) -> int | None:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path)

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(self.file, self.line(path), path, message)


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(file, key_node.start_mark.line + 1, path,
                                  "keys must be plain names, not lists or mappings")
            key = _scalar(key_node)
            if key in out:
                raise ConfigError(file, key_node.start_mark.line + 1, path,
                                  f"duplicate key {key!r}")
            out[key] = _walk(value_node, (*path, key), lines, file)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, str) and "${" in value:
        return _expand(value, file, node.start_mark.line + 1, path)
    return value


_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


def _expand(text: str, file: str, line: int, path: KeyPath) -> str:
    """``${NAME}``, ``${NAME:-default}`` and ``$${`` in one string value."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name is None:
            raise ConfigError(file, line, path, "malformed ${...}: expected ${NAME} or"
                              " ${NAME:-default} (write $${ for a literal ${)")
        value = os.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(file, line, path,
                                  f"environment variable {name} is not set (used as ${{{name}}})")
            return default
        return value
    return _REFERENCE.sub(one, text)


def _from_files(fields: Mapping[str, Any], value: dict[Any, Any], doc: Located,
                path: KeyPath) -> dict[Any, Any]:
    """``foo_file: PATH`` -> ``foo: <the file's content>`` for each field ``foo``."""
    out = dict(value)
    for key, source in value.items():
        if not isinstance(key, str) or not key.endswith("_file"):
            continue
        base = key.removesuffix("_file")
        if key in fields or base not in fields:
            continue
        if base in value:
            raise doc.error((*path, key), f"{base} and {key} are both given; keep one")
        if not isinstance(source, str) or not source:
            raise doc.error((*path, key), f"expected a file path, got {source!r:.60}")
        file = Path(doc.file).parent / source  # an absolute source stays as it is
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise doc.error((*path, key), f"cannot read {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise doc.error((*path, key), f"cannot read {file}: not UTF-8 text") from None
        out[base] = text.removesuffix("\n").removesuffix("\r")
        del out[key]
        doc.lines.setdefault((*path, base), doc.lines.get((*path, key), 0))
    return out


def _scalar(node: yaml.Node) -> Any:
    """A scalar as YAML 1.1's safe loader reads it (``key:`` with nothing after it is null)."""
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def _syntax_error(exc: yaml.YAMLError, file: str) -> ConfigError:
    """file:line, the column, and what the parser expected (and where it began)."""
    mark = getattr(exc, "problem_mark", None)
    if not isinstance(exc, yaml.MarkedYAMLError) or mark is None:
        return ConfigError(file, None, (), f"not valid YAML: {exc}")
    text = f"not valid YAML: {exc.problem} (column {mark.column + 1})"
    start = exc.context_mark
    if exc.context and start is not None and start.line != mark.line:
        text += f", {exc.context} at line {start.line + 1}, column {start.column + 1}"
    elif exc.context:
        text += f", {exc.context}"
    return ConfigError(file, mark.line + 1, (), text)


def parse(text: str, file: str = "<string>") -> Located:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, file) from None
    lines: dict[KeyPath, int] = {}
    data = {} if node is None else _walk(node, (), lines, file)
    return Located(file, data, lines)


def load(path: Path | str, cls: type[T]) -> T:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), None, (), f"cannot read: {exc.strerror}") from None
    doc = parse(text, str(path))
    loaded: T = bind(cls, doc.data, doc)
    return loaded


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    origin = get_origin(tp)
    if origin in (list, tuple):
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin in (dict, Mapping):
        return f"a mapping of {_type_name(get_args(tp)[1])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, "null" if tp is type(None) else str(tp)
    )


def bind(tp: Any, value: Any, doc: Located, path: KeyPath = ()) -> Any:  # noqa: PLR0911, PLR0912  a type dispatcher: one arm per kind of type, kept flat
    """Convert ``value`` to type ``tp`` or raise ConfigError at ``path``."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _bind_dataclass(tp, value, doc, path)
    if origin in (typing.Union, types.UnionType):
        arms = get_args(tp)
        if value is None and type(None) in arms:
            return None
        errors: list[tuple[Any, ConfigError]] = []
        for arm in arms:
            try:
                return bind(arm, value, doc, path)
            except ConfigError as exc:
                errors.append((arm, exc))
        # If one arm has the value's shape (a mapping for a dataclass, a list for
        # a list), its error says more than "expected X or Y".
        shaped = [exc for arm, exc in errors if _same_shape(arm, value)]
        if len(shaped) == 1:
            raise shaped[0]
        raise doc.error(path, f"expected {_type_name(tp)}, got {_shown(value, path)}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise doc.error(path, f"expected {_type_name(tp)}, got {_shown(value, path)}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise doc.error(path, f"expected {_type_name(tp)}, got {_shown(value, path)}")
        items = _each(enumerate(value),
                      lambda i, v: bind(get_args(tp)[0], v, doc, (*path, i)))
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise doc.error(path, f"expected {_type_name(tp)}, got {_shown(value, path)}")
        key_tp, val_tp = get_args(tp)
        pairs = _each(value.items(), lambda k, v: (bind(key_tp, k, doc, (*path, k)),
                                                    bind(val_tp, v, doc, (*path, k))))
        return dict(pairs)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is type(None) and value is None:
        return None
    if (isinstance(tp, type) and isinstance(value, tp)
            and not (tp is int and isinstance(value, bool))):
        return value
    raise doc.error(path, f"expected {_type_name(tp)}, got {_shown(value, path)}")


# Keys whose values an error message never repeats.
SECRET_KEYS = ("password", "secret", "token", "tokens", "url", "headers")


def _shown(value: Any, path: KeyPath) -> str:
    """The value as an error message may quote it: not at all under a secret's key."""
    if path and isinstance(path[-1], str) and path[-1].endswith(SECRET_KEYS):
        return f"a {type(value).__name__} (not shown)"
    return f"{value!r:.60}"


def _each(items: Iterable[tuple[Any, Any]], step: Callable[[Any, Any], T]) -> list[T]:
    """``step`` of every item; every item is tried, and all their errors are raised as one."""
    results: list[T] = []
    errors: list[ConfigError] = []
    for key, value in items:
        try:
            results.append(step(key, value))
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise ConfigError.combine(errors)
    return results


def _same_shape(tp: Any, value: Any) -> bool:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) or origin in (dict, Mapping):
        return isinstance(value, dict)
    if origin in (list, tuple):
        return isinstance(value, list)
    return False


def _bind_dataclass(cls: Any, value: Any, doc: Located, path: KeyPath) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise doc.error(path, f"expected a mapping, got {_shown(value, path)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    value = _from_files(fields, value, doc, path)
    errors = [doc.error((*path, key), f"unknown key {key!r}; expected one of:"
                        f" {', '.join(sorted(fields))}") for key in value if key not in fields]
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                errors.append(doc.error(
                    path, f"missing required key {name!r} ({_type_name(hints[name])})"))
            continue
        try:
            bound = bind(hints[name], value[name], doc, (*path, name))
        except ConfigError as exc:
            errors.append(exc)
            continue
        low, high = f.metadata.get("min"), f.metadata.get("max")
        if low is not None and bound < low:
            errors.append(doc.error((*path, name), f"expected >= {low}, got {bound!r}"))
        elif high is not None and bound > high:
            errors.append(doc.error((*path, name), f"expected <= {high}, got {bound!r}"))
        kwargs[name] = bound
    if errors:
        raise ConfigError.combine(errors)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        # __post_init__ cross-checks raise ValueError("key: message").
        key, _, message = str(exc).partition(": ")
        sub = (*path, key) if key in fields else path
        raise doc.error(sub, message if key in fields else str(exc)) from None
