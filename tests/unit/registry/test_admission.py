"""Admission: the registry checked at ingest, the same for MQTT and HTTP; and its reloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector.admission import Admission, ingest_checked
from collector.ingest import Accepted, Refused
from collector.registry import model
from collector.registry.live import LiveRegistry
from tests.unit.test_ingest import payload

NOW = "2024-05-01T09:00:00Z"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Admission, Path, str]:
    reg, secret = model.add_gateway(model.Registry(), "gw-1", district="강남구",
                                    site="역삼역 2번 출구", kind="bus_stop", now=NOW)
    reg, _ = model.add_gateway(reg, "gw-old", district="d", site="s", kind="apartment", now=NOW)
    reg = model.revoke(reg, "gw-old", now=NOW)
    path = tmp_path / "registry.yaml"
    model.save(path, reg)
    return Admission(LiveRegistry(path)), path, secret


def test_unknown_and_revoked_gateways_are_refused_with_their_reasons(
        setup: tuple[Admission, Path, str]) -> None:
    admission, _, _ = setup
    unknown = ingest_checked(payload(gateway="gw-9"), "gw-9", admission)
    assert isinstance(unknown, Refused)
    assert (unknown.gateway, unknown.reason) == ("gw-9", "unknown_gateway")
    revoked = ingest_checked(payload(gateway="gw-old"), "gw-old", admission)
    assert isinstance(revoked, Refused) and revoked.reason == "revoked_gateway"
    nowhere = ingest_checked(payload(), None, admission)
    assert isinstance(nowhere, Refused) and nowhere.reason == "unknown_gateway"


def test_the_registrys_site_tags_replace_the_payloads_and_are_counted(
        setup: tuple[Admission, Path, str]) -> None:
    admission, _, _ = setup
    result = ingest_checked(payload(), "gw-1", admission)  # the payload says 마포구
    assert isinstance(result, Accepted)
    for p in result.points:
        assert (p.tags["district"], p.tags["site"], p.tags["site_kind"]) == (
            "강남구", "역삼역 2번 출구", "bus_stop")
        assert p.tags["gateway"] == "gw-1"
    assert admission.stats.site_overrides == 1
    agreeing = payload(site={"district": "강남구", "site": "역삼역 2번 출구", "kind": "bus_stop"})
    again = ingest_checked(agreeing, "gw-1", admission)
    assert isinstance(again, Accepted)
    assert admission.stats.site_overrides == 1


def test_without_a_registry_ingest_is_unchanged() -> None:
    result = ingest_checked(payload(gateway="gw-9"), "gw-9", None)
    assert isinstance(result, Accepted)
    assert result.points[0].tags["district"] == "마포구"


def test_a_payload_error_is_still_the_payloads(setup: tuple[Admission, Path, str]) -> None:
    admission, _, _ = setup
    result = ingest_checked(b"{", "gw-1", admission)
    assert isinstance(result, Refused) and result.reason != "unknown_gateway"


def test_tokens_verify_against_the_hash_and_a_rotation_voids_the_old_one(
        setup: tuple[Admission, Path, str]) -> None:
    admission, path, secret = setup
    assert admission.token_ok("gw-1", secret)
    assert admission.token_ok("gw-1", secret)  # from the cache
    assert not admission.token_ok("gw-1", secret + "x")
    assert not admission.token_ok("gw-9", secret)
    reg, new = model.rotate(model.load(path), "gw-1", now=NOW)
    model.save(path, reg)
    assert admission.live.refresh()
    assert not admission.token_ok("gw-1", secret)
    assert admission.token_ok("gw-1", new)


def test_live_registry_reloads_on_change_only_and_keeps_the_last_good_one(
        setup: tuple[Admission, Path, str]) -> None:
    admission, path, _ = setup
    live = admission.live
    assert not live.refresh()
    assert live.refresh(force=True) and live.stats.reloads == 1
    reg, _ = model.add_gateway(live.current, "gw-2", district="d", site="s", kind="apartment",
                               now=NOW)
    model.save(path, reg)
    assert live.refresh()
    assert "gw-2" in live.current.gateways
    path.write_text("gateways: [broken\n")
    assert not live.refresh()
    assert live.stats.reload_errors == 1 and "not valid YAML" in live.stats.last_error
    assert "gw-2" in live.current.gateways  # still in force
    assert admission.refusal("gw-2") is None
    os.unlink(path)
    assert not live.refresh()
    assert live.stats.reload_errors == 2
    assert "gw-2" in live.current.gateways


def test_a_collector_does_not_start_on_an_unreadable_registry(tmp_path: Path) -> None:
    with pytest.raises(model.RegistryError, match="cannot read"):
        LiveRegistry(tmp_path / "missing.yaml")
