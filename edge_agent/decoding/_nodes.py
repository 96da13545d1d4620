"""YAML nodes that remember their line and key path, for profile error messages.

``yaml.safe_load`` forgets where a value came from; composing keeps every node's
mark, so an error can say ``pms5003.yaml:57: fields[2].type: expected ...``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from typing import TypeVar

import yaml

from edge_agent.decoding.errors import ProfileError

T = TypeVar("T")


class At:
    """A YAML node with its key path, for reading values and raising errors."""

    __slots__ = ("node", "path", "source")

    def __init__(self, source: str, node: yaml.Node, path: str) -> None:
        self.source, self.node, self.path = source, node, path

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def error(self, message: str) -> ProfileError:
        return ProfileError(self.source, self.line, self.path, message)

    def expected(self, what: str) -> ProfileError:
        return self.error(f"expected {what}, got {self.shown()}")

    def shown(self) -> str:
        if isinstance(self.node, yaml.MappingNode):
            return "a mapping"
        if isinstance(self.node, yaml.SequenceNode):
            items = [At(self.source, n, self.path) for n in self.node.value]
            if all(isinstance(item.node, yaml.ScalarNode) for item in items):
                return f"[{', '.join(repr(item.value()) for item in items)}]"
            return "a list"
        return repr(self.value())

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def keys(self, spec: Mapping[str, str], required: Collection[str]) -> dict[str, At]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.expected(f"a mapping with keys {', '.join(spec)}")
        found: dict[str, At] = {}
        for key_node, value_node in self.node.value:
            key = At(self.source, key_node, self.path)
            name = key.value() if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(name, str):
                raise key.expected("a text key")
            key.path = self._key(name)
            if name in found:
                raise key.error(f"duplicate key (first given on line {found[name].line})")
            if name not in spec:
                close = difflib.get_close_matches(name, spec, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise key.error(f"unknown key{hint}; expected one of {', '.join(spec)}")
            found[name] = At(self.source, value_node, key.path)
        for name in spec:
            if name in required and name not in found:
                raise self.missing(name, spec[name])
        return found

    def child(self, key: str) -> At:
        """The value under ``key`` of this mapping (keys already checked), else this node."""
        if isinstance(self.node, yaml.MappingNode):
            for key_node, value_node in self.node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                    return At(self.source, value_node, self._key(key))
        return self

    def missing(self, key: str, expected: str) -> ProfileError:
        """A required ``key`` is absent from this mapping (blamed on the mapping's line)."""
        return ProfileError(
            self.source, self.line, self._key(key), f"required key is missing; expected {expected}"
        )

    def items(self, what: str) -> list[At]:
        if not isinstance(self.node, yaml.SequenceNode) or not self.node.value:
            raise self.expected(what)
        return [At(self.source, n, f"{self.path}[{i}]") for i, n in enumerate(self.node.value)]

    def value(self) -> object:
        if not isinstance(self.node, yaml.ScalarNode):
            return None
        return yaml.constructor.SafeConstructor().construct_object(self.node)

    def integer(self, what: str, low: int | None = None, high: int | None = None) -> int:
        value = self.value()
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            raise self.expected(what)
        return value

    def number(self, what: str) -> int | float:
        value = self.value()
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.expected(what)
        return value

    def text(self, what: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.value()
        if not isinstance(value, str) or not value or (pattern and not pattern.fullmatch(value)):
            raise self.expected(what)
        return value

    def hex_bytes(self, what: str) -> bytes:
        value = self.value()
        if not isinstance(value, str):  # unquoted 4D42 would be read as a number
            raise self.expected(f'{what} as a quoted hex string like "42 4D"')
        try:
            data = bytes.fromhex(value)
        except ValueError:
            raise self.expected(f"{what} as hex digits in pairs") from None
        if not data:
            raise self.expected(f"{what}: at least one byte")
        return data

    def choice(self, table: Mapping[str, T], what: str = "") -> T:
        value = self.value()
        if not isinstance(value, str) or value not in table:
            raise self.expected(what or f"one of {', '.join(table)}")
        return table[value]
