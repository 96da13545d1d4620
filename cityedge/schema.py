"""JSON Schemas for the files people write, generated from what loads them.

Agent and collector configs and alert rule files are bound to dataclasses
(``yamlconfig.bind``): their schemas come from those dataclasses, and a rule's
per-kind keys from the table its validator uses (``KIND_KEYS``). Firmware
profiles are checked by hand-written loaders that read key tables: their
schema comes from those tables (``edge_agent.decoding.keyschema``).

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


def rules_schema() -> dict[str, Any]:
    """Alert rule files: the RuleFile dataclasses, plus what each kind reads (KIND_KEYS, the
    table RuleSpec checks against) and the rule name's pattern (NAME_RE, the same)."""
    from collector.alerts.rulefile import (  # noqa: PLC0415
        KIND_KEYS,
        NAME_RE,
        OPTIONAL_KEYS,
        RuleFile,
    )

    doc = schema(RuleFile, "cityedge alert rules")
    rule = doc["properties"]["rules"]["items"]
    rule["properties"]["name"]["pattern"] = NAME_RE.pattern
    by_kind = []
    for kind, used in KIND_KEYS.items():
        # A key another kind reads may only be left out (or null) here.
        then: dict[str, Any] = {"properties": {key: {"type": "null"}
                                               for key in sorted(OPTIONAL_KEYS - used)}}
        if "field" in used:
            then["required"] = ["field"]
            then["properties"]["field"] = {"type": "string", "minLength": 1}
        by_kind.append({"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                        "then": then})
    rule["allOf"] = [*rule.get("allOf", []), *by_kind]
    return doc


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every kind of file an installer or engineer writes."""
    # The config types live above this shared package; imported only to generate.
    from collector.config import CollectorConfig  # noqa: PLC0415
    from edge_agent.config import AgentConfig  # noqa: PLC0415
    from edge_agent.decoding.keyschema import profile_schema  # noqa: PLC0415

    return {"agent.schema.json": schema(AgentConfig, "cityedge edge agent config"),
            "collector.schema.json": schema(CollectorConfig, "cityedge collector config"),
            "rules.schema.json": rules_schema(),
            "profile.schema.json": profile_schema()}


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
