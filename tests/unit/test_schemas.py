"""The shipped JSON Schemas are what the config dataclasses accept, regenerated with
``python -m cityedge.schema``, and the samples name them for an editor's language server."""

from __future__ import annotations

import json

import pytest

from cityedge import shipped
from cityedge.schema import render, schemas


@pytest.mark.parametrize("name", sorted(schemas()))
def test_the_shipped_schema_is_the_generated_one(name: str) -> None:
    shipped_text = (shipped.schemas_dir() / name).read_text(encoding="utf-8")
    assert shipped_text == render(schemas()[name]), (
        f"configs/schemas/{name} is stale: run python -m cityedge.schema")


def test_the_agent_schema_says_what_the_loader_checks() -> None:
    doc = json.loads((shipped.schemas_dir() / "agent.schema.json").read_text(encoding="utf-8"))
    assert doc["additionalProperties"] is False
    assert doc["patternProperties"] == {"_file$": {"type": "string"}}
    assert {"anyOf": [{"required": ["gateway"]}, {"required": ["gateway_file"]}]} in doc["allOf"]
    site = doc["properties"]["gateway"]["properties"]["site"]
    assert site["properties"]["kind"] == {"enum": ["dust_zone", "bus_stop", "apartment"]}
    outbox = doc["properties"]["outbox"]
    assert outbox["properties"]["commit_window"] == {"type": "number", "minimum": 0.0,
                                                     "maximum": 60.0, "default": 1.0}
    assert outbox["properties"]["path"]["default"] == "/var/lib/cityedge/outbox.sqlite"


@pytest.mark.parametrize("name", shipped.SAMPLES)
def test_each_sample_names_its_schema(name: str) -> None:
    first = shipped.sample_config(name).read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# yaml-language-server: $schema=schemas/{name}.schema.json"
    assert (shipped.sample_config(name).parent / "schemas" / f"{name}.schema.json").exists()
