"""JSON Schemas for the config files, generated from the same dataclasses that load them.

An editor with a YAML language server checks a config as it is typed (the
samples name their schema on their first line). The schemas say what
``yamlconfig.bind`` accepts: keys, types, enums, bounds, required keys; a
``foo_file`` key stands for any ``foo`` (read from that file), and plugin
sections (``writer``, notifiers) take any keys, as their plugins check them.
Generated, never edited: ``python -m cityedge.schema`` rewrites
``configs/schemas/``; a test fails when they differ from the dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _type(tp: Any) -> dict[str, Any]:  # noqa: PLR0911  one arm per kind of type
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _object(tp)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type(arm) for arm in get_args(tp)]}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (list, tuple):
        return {"type": "array", "items": _type(get_args(tp)[0])}
    if origin in (dict, Mapping):
        return {"type": "object", "additionalProperties": _type(get_args(tp)[1])}
    simple = {int: "integer", float: "number", str: "string", bool: "boolean",
              type(None): "null"}
    if tp in simple:
        return {"type": simple[tp]}
    return {}  # Any: a plugin checks it


def _object(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        schema = _type(hints[f.name])
        for word, key in (("min", "minimum"), ("max", "maximum")):
            if word in f.metadata:
                schema[key] = f.metadata[word]
        if f.default is not dataclasses.MISSING and isinstance(
                f.default, str | int | float | bool | type(None)):
            schema["default"] = f.default
        properties[f.name] = schema
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    # foo_file: PATH reads foo from that file (yamlconfig); any other key is a typo.
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "patternProperties": {"_file$": {"type": "string"}},
                           "additionalProperties": False}
    if required:
        # A required key may come from its _file twin instead.
        out["allOf"] = [{"anyOf": [{"required": [name]}, {"required": [f"{name}_file"]}]}
                        for name in required]
    return out


def schema(cls: type, title: str) -> dict[str, Any]:
    return {"$schema": DRAFT, "title": title, **_object(cls)}


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every config kind."""
    # The config types live above this shared package; imported only to generate.
    from collector.config import CollectorConfig  # noqa: PLC0415
    from edge_agent.config import AgentConfig  # noqa: PLC0415

    return {"agent.schema.json": schema(AgentConfig, "cityedge edge agent config"),
            "collector.schema.json": schema(CollectorConfig, "cityedge collector config")}


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def main() -> int:
    from cityedge import shipped  # noqa: PLC0415  (it imports this package)

    folder = shipped.schemas_dir()
    for name, doc in schemas().items():
        (folder / name).write_text(render(doc), encoding="utf-8")
        print(folder / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
