"""The JSON Schemas of alert rule files and firmware profiles (configs/schemas/) accept every
shipped file, and refuse what the loaders refuse: each broken example below is refused by
the loader (RuleError, ProfileError) and by the schema, checked with an independent JSON
Schema validator (jsonschema). The config schemas accept every shipped sample too."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from cityedge import shipped
from collector.alerts.errors import RuleError
from collector.alerts.rulefile import parse_rules
from edge_agent.decoding import parse_profile
from edge_agent.decoding.errors import ProfileError

ROOT = Path(__file__).resolve().parents[2]
Doc = dict[str, Any]


def validator(name: str) -> Draft202012Validator:
    doc = json.loads((shipped.schemas_dir() / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(doc)


def load(path: Path) -> Doc:
    return yaml.safe_load(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def schema_errors(name: str, doc: Doc) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator(name).iter_errors(doc)]


# -- every shipped file is accepted ----------------------------------------------------

@pytest.mark.parametrize("path", sorted(shipped.profiles_dir().glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_shipped_profile_fits_the_profile_schema(path: Path) -> None:
    assert schema_errors("profile.schema.json", load(path)) == []


RULE_FILES = [*shipped.rule_files(), ROOT / "simulators" / "demo_rules.yaml"]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.stem)
def test_every_shipped_rule_file_fits_the_rules_schema(path: Path) -> None:
    parse_rules(path.read_text(encoding="utf-8"), str(path))  # the loader takes it too
    assert schema_errors("rules.schema.json", load(path)) == []


SAMPLES = [("agent.schema.json", shipped.sample_config("agent")),
           ("collector.schema.json", shipped.sample_config("collector")),
           *[("agent.schema.json", shipped.site_sample(s)) for s in shipped.SITE_SAMPLES]]


@pytest.mark.parametrize(("schema", "path"), SAMPLES, ids=lambda x: getattr(x, "stem", x))
def test_every_sample_config_fits_its_schema(schema: str, path: Path) -> None:
    assert schema_errors(schema, load(path)) == []


# -- broken rule files: the loader and the schema both refuse them ---------------------

def _rule(doc: Doc, kind: str) -> Doc:
    return next(r for r in doc["rules"] if r["kind"] == kind)


RULE_BREAKS: dict[str, Callable[[Doc], None]] = {
    "unknown key in a rule": lambda d: d["rules"][0].update(colour="red"),
    "unknown kind": lambda d: d["rules"][0].update(kind="treshold"),
    "name not lower_snake_case": lambda d: d["rules"][0].update(name="PM10-Band"),
    "threshold without its field": lambda d: _rule(d, "threshold").pop("field"),
    "threshold with an empty field": lambda d: _rule(d, "threshold").update(field=""),
    "a key its kind does not read": lambda d: d["rules"].append(
        {"name": "quiet", "kind": "silence", "after": "10m", "above": 3}),
    "late not ignore or report": lambda d: d["rules"][0].update(late="sometimes"),
    "out_of_range not evaluate or skip": lambda d: d["rules"][0].update(out_of_range="drop"),
    "version 2": lambda d: d.update(version=2),
    "no rules": lambda d: d.pop("rules"),
    "unknown top key": lambda d: d.update(rulez=[]),
    "schedule day misspelt": lambda d: d.update(schedules={"night": {"days": ["monday"]}}),
    "coverage above 1": lambda d: _rule(d, "threshold").setdefault(
        "mean", {"window": "1h"}).update(min_coverage=1.5),
    "consecutive below 1": lambda d: _rule(d, "threshold").update(consecutive=0),
    "round past 6": lambda d: _rule(d, "threshold").update(round=7),
    "flap count below 2": lambda d: d.setdefault("defaults", {}).update(flap={"count": 1}),
    "group_by a number": lambda d: d["rules"][0].update(group_by=3),
}


@pytest.mark.parametrize("why", sorted(RULE_BREAKS))
def test_a_broken_rule_file_is_refused_by_the_loader_and_the_schema(why: str) -> None:
    doc = copy.deepcopy(load(ROOT / "configs" / "rules" / "dust.yaml"))
    RULE_BREAKS[why](doc)
    with pytest.raises(RuleError):
        parse_rules(yaml.safe_dump(doc, allow_unicode=True), "broken.yaml")
    assert schema_errors("rules.schema.json", doc), f"the schema takes a file with {why}"


# -- broken profiles: the loader and the schema both refuse them -----------------------

def _field(doc: Doc) -> Doc:
    return doc["frames"][0]["fields"][0]  # type: ignore[no-any-return]


PROFILE_BREAKS: dict[str, Callable[[Doc], None]] = {
    "unknown top key": lambda d: d.update(colour="blue"),
    "no vendor": lambda d: d.pop("vendor"),
    "model not lower_snake_case": lambda d: d.update(model="PMS5003"),
    "unknown protocol": lambda d: d.update(protocol="canbus"),
    "parity misspelt": lambda d: d["serial"].update(parity="evn"),
    "unknown serial key": lambda d: d["serial"].update(flow="rtscts"),
    "serial without its baud rate": lambda d: d["serial"].pop("baudrate"),
    "stop bits 3": lambda d: d["serial"].update(stopbits=3),
    "byte size 9": lambda d: d["serial"].update(bytesize=9),
    "unknown checksum algorithm": lambda d: d["checksum"].update(algorithm="crc99"),
    "checksum without its offset": lambda d: d["checksum"].pop("offset"),
    "unknown framing key": lambda d: d["framing"].update(start_byte="42"),
    "unknown unit": lambda d: _field(d).update(unit="ug"),
    "unknown value type": lambda d: _field(d).update(type="u17be"),
    "field without its unit": lambda d: _field(d).pop("unit"),
    "unknown field key": lambda d: _field(d).update(colour="red"),
    "frame without its name": lambda d: d["frames"][0].pop("name"),
    "unknown frame kind": lambda d: d["frames"][0].update(kind="status"),
    "unknown polling key": lambda d: d["polling"].update(every=5),
    "power_up misspelt": lambda d: d["polling"].update(power_up="sleeping"),
    "unknown mode key": lambda d: next(iter(d["polling"]["modes"].values())).update(speed=2),
    "unknown command role": lambda d: d["commands"].update(explode={"send": "42 4D"}),
}
MODBUS_BREAKS: dict[str, Callable[[Doc], None]] = {
    "slave 0": lambda d: d["modbus"].update(slave=0),
    "slave 248": lambda d: d["modbus"].update(slave=248),
    "no reads": lambda d: d["modbus"].pop("reads"),
    "unknown register table": lambda d: d["modbus"]["reads"][0].update(table="register"),
    "read without its count": lambda d: d["modbus"]["reads"][0].pop("count"),
    "modbus field without its table": lambda d: d["fields"][0].pop("table"),
}


def _refused_by_both(model: str, break_it: Callable[[Doc], None], why: str) -> None:
    doc = copy.deepcopy(load(shipped.profiles_dir() / f"{model}.yaml"))
    break_it(doc)
    with pytest.raises(ProfileError):
        parse_profile(yaml.safe_dump(doc, allow_unicode=True), "broken.yaml",
                      model=doc.get("model") if isinstance(doc.get("model"), str) else None)
    assert schema_errors("profile.schema.json", doc), f"the schema takes a profile with {why}"


@pytest.mark.parametrize("why", sorted(PROFILE_BREAKS))
def test_a_broken_profile_is_refused_by_the_loader_and_the_schema(why: str) -> None:
    _refused_by_both("pms5003", PROFILE_BREAKS[why], why)


@pytest.mark.parametrize("why", sorted(MODBUS_BREAKS))
def test_a_broken_modbus_profile_is_refused_by_the_loader_and_the_schema(why: str) -> None:
    _refused_by_both("noise_meter_modbus", MODBUS_BREAKS[why], why)
