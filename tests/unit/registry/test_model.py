"""The registry file: edits, validation, round trips, and the keys it hands the collector."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from cityedge.uplink.seal import derive_key
from collector.registry import model
from collector.registry.model import Registry, RegistryError
from collector.registry.passwords import verify_password

NOW = "2024-05-01T09:00:00Z"


def one(gid: str = "gw-1", **kw: str) -> tuple[Registry, str]:
    args = {"district": "강남구", "site": "역삼역 2번 출구", "kind": "bus_stop", **kw}
    return model.add_gateway(Registry(), gid, now=NOW, **args)


def test_add_gives_a_secret_whose_hash_and_seal_key_are_stored() -> None:
    reg, secret = one()
    g = reg.gateways["gw-1"]
    assert verify_password(secret, g.password_hash)
    assert reg.key_for("gw-1") == derive_key(secret)
    assert g.site_tags == {"district": "강남구", "site": "역삼역 2번 출구", "kind": "bus_stop"}
    assert secret not in model.dump(reg)


def test_key_for_unknown_or_revoked_is_none() -> None:
    reg, _ = one()
    assert reg.key_for("gw-2") is None
    assert model.revoke(reg, "gw-1", now=NOW).key_for("gw-1") is None


def test_rotate_replaces_the_secret_and_the_old_one_stops_verifying() -> None:
    reg, old = one()
    reg2, new = model.rotate(reg, "gw-1", now="2024-06-01T00:00:00Z")
    g = reg2.gateways["gw-1"]
    assert new != old
    assert verify_password(new, g.password_hash)
    assert not verify_password(old, g.password_hash)
    assert reg2.key_for("gw-1") == derive_key(new)
    assert (g.created, g.rotated) == (NOW, "2024-06-01T00:00:00Z")


def test_revoked_gateways_stay_listed_and_cannot_be_rotated_or_re_added() -> None:
    reg, _ = one()
    reg = model.revoke(reg, "gw-1", now=NOW)
    assert reg.gateways["gw-1"].revoked
    assert reg.active() == []
    with pytest.raises(RegistryError, match="revoked"):
        model.rotate(reg, "gw-1", now=NOW)
    with pytest.raises(RegistryError, match="already revoked"):
        model.add_gateway(reg, "gw-1", district="d", site="s", kind="apartment", now=NOW)


@pytest.mark.parametrize(("gid", "why"), [
    ("gw:1", "expected letters"), ("gw/1", "expected letters"), ("gw+1", "expected letters"),
    ("-gw", "expected letters"), ("", "expected letters"), ("x" * 65, "expected letters"),
    ("collectors", "reserved"),
])
def test_ids_that_cannot_be_usernames_or_topic_levels_are_refused(gid: str, why: str) -> None:
    with pytest.raises(RegistryError, match=why):
        one(gid)


@pytest.mark.parametrize(("kw", "why"), [
    ({"kind": "tunnel"}, "kind"), ({"district": ""}, "district"),
    ({"site": "a\nb"}, "site"), ({"site": "ends\\"}, "site"),
])
def test_bad_site_tags_are_refused(kw: dict[str, str], why: str) -> None:
    with pytest.raises(RegistryError, match=why):
        one(**kw)


def test_a_name_is_a_gateway_or_a_collector_never_both() -> None:
    reg, _ = one()
    with pytest.raises(RegistryError, match="gateway id"):
        model.add_collector(reg, "gw-1", now=NOW)
    reg, _ = model.add_collector(reg, "col-1", now=NOW)
    with pytest.raises(RegistryError, match="collector"):
        model.add_gateway(reg, "col-1", district="d", site="s", kind="apartment", now=NOW)
    with pytest.raises(RegistryError, match="--replace"):
        model.add_collector(reg, "col-1", now=NOW)
    reg2, secret = model.add_collector(reg, "col-1", now=NOW, replace=True)
    assert verify_password(secret, reg2.collectors["col-1"].password_hash)


def test_dump_parse_round_trip_keeps_korean_text_readable() -> None:
    reg, _ = one()
    reg, _ = model.add_gateway(reg, "gw-2", district="마포구", site="망원동", kind="dust_zone",
                               now=NOW)
    reg = model.revoke(reg, "gw-2", now=NOW)
    reg, _ = model.add_collector(reg, "col-1", now=NOW)
    text = model.dump(reg)
    assert "강남구" in text and "역삼역 2번 출구" in text
    assert model.parse(text) == reg


def test_save_is_atomic_and_owner_only(tmp_path: Path) -> None:
    reg, _ = one()
    path = tmp_path / "registry.yaml"
    model.save(path, reg)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert model.load(path) == reg
    assert [p.name for p in tmp_path.iterdir()] == ["registry.yaml"]
    assert model.load_or_empty(tmp_path / "missing.yaml") == Registry()


def _doc(reg: Registry) -> dict[str, object]:
    doc = yaml.safe_load(model.dump(reg))
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(("edit", "why"), [
    (lambda d: d["gateways"]["gw-1"].update(kind="x"), r"gateways\.gw-1: kind"),
    (lambda d: d["gateways"]["gw-1"].update(seal_key="zz"), r"gw-1\.seal_key"),
    (lambda d: d["gateways"]["gw-1"].update(password_hash="plain"), r"gw-1\.password_hash"),
    (lambda d: d["gateways"]["gw-1"].update(revoked="no"), r"gw-1\.revoked"),
    (lambda d: d["gateways"]["gw-1"].update(colour="red"), "unknown key"),
    (lambda d: d["gateways"].update({"gw:2": d["gateways"]["gw-1"]}), "gw:2"),
    (lambda d: d.update(version=2), "version 2"),
    (lambda d: d.update(topic_prefix="a/#"), "topic_prefix"),
    (lambda d: d.update(extra=1), "unknown key"),
    (lambda d: d.update(gateways=[1]), "gateways: expected a mapping"),
])
def test_hand_edits_that_break_the_file_name_the_entry(edit: object, why: str) -> None:
    doc = _doc(one()[0])
    edit(doc)  # type: ignore[operator]
    with pytest.raises(RegistryError, match=why):
        model.parse(yaml.safe_dump(doc, allow_unicode=True), "registry.yaml")


def test_not_yaml_or_not_a_mapping() -> None:
    with pytest.raises(RegistryError, match="not valid YAML"):
        model.parse("a: [", "r.yaml")
    with pytest.raises(RegistryError, match="mapping at the top"):
        model.parse("- 1\n", "r.yaml")
    assert model.parse("") == Registry()
