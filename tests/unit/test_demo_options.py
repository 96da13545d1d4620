"""``edge-sim demo``'s security options: which go together, and what an operator's registry
must hold before the demo uses their broker (checked before anything starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.registry import model
from simulators import cli
from simulators.demo_secure import Link, OperatorBroker, operator_trust
from simulators.fleet import DEMO_FLEET

NOW = "2024-05-01T09:00:00Z"
MQTT = ("mqtt.example", 8883)


def _operator(argv: list[str]) -> OperatorBroker | None:
    args = cli._parser().parse_args(["demo", *argv])
    return cli._operator(args.parser, args)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--mqtt", "h:1"], "--mqtt: the demo cannot write that broker's password and ACL files;"
                        " give the operator's --registry FILE and --secrets DIR, or --insecure"),
    (["--mqtt", "h:1", "--registry", "r.yaml"], "give the operator's --registry FILE and"),
    (["--registry", "r.yaml", "--secrets", "s"], "--registry --secrets: only with --mqtt"),
    (["--ca-file", "ca.crt"], "--ca-file: only with --mqtt"),
    (["--mqtt", "h:1", "--insecure", "--registry", "r.yaml"],
     "--insecure runs without a registry; drop --registry"),
    (["--insecure", "--collector", "c-2"], "--insecure runs without a registry; drop --collector"),
])
def test_options_that_do_not_go_together_are_usage_errors(
        argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _operator(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: edge-sim demo") and expected in err, err


def test_the_secure_defaults_and_the_explicit_choices_parse() -> None:
    assert _operator([]) is None  # the demo's own broker, secured
    assert _operator(["--insecure"]) is None
    assert _operator(["--mqtt", "h:1", "--insecure"]) is None
    assert _operator(["--mqtt", "h:1", "--registry", "r.yaml", "--secrets", "s", "--ca-file",
                      "ca.crt", "--collector", "c-2", "--collector-mqtt", "h:2"]) == (
        OperatorBroker(Path("r.yaml"), Path("s"), "c-2", Path("ca.crt"), ("h", 2)))


def _registry(tmp: Path, *, skip: str | None = None) -> tuple[OperatorBroker, dict[str, str]]:
    """An operator's registry with the demo's gateways (but ``skip``) and collector-1, and
    their secrets in files, as ``gateways add --secret-file`` leaves them."""
    secrets = tmp / "secrets"
    secrets.mkdir()
    reg, collector = model.add_collector(model.Registry(), "collector-1", now=NOW)
    given = {"collector-1": collector}
    for gw in DEMO_FLEET:
        if gw.id != skip:
            reg, given[gw.id] = model.add_gateway(reg, gw.id, district=gw.district,
                                                  site=gw.site, kind=gw.kind, now=NOW)
    for name, secret in given.items():
        (secrets / f"{name}.secret").write_text(secret + "\n")
    model.save(tmp / "registry.yaml", reg)
    return OperatorBroker(tmp / "registry.yaml", secrets, ca_file=tmp / "ca.crt"), given


def test_an_operators_registry_with_the_demos_gateways_gives_each_agent_its_secret_file(
        tmp_path: Path) -> None:
    operator, _ = _registry(tmp_path)
    trust = operator_trust(operator, MQTT, DEMO_FLEET)
    assert not trust.insecure and trust.registry == tmp_path / "registry.yaml"
    assert trust.secret_files == {gw.id: tmp_path / "secrets" / f"{gw.id}.secret"
                                  for gw in DEMO_FLEET}
    assert trust.gateways == Link("mqtt.example", 8883, tls=True, ca_file=tmp_path / "ca.crt")
    assert trust.collectors.yaml() == {
        "host": "mqtt.example", "port": 8883, "username": "collector-1",
        "password_file": str(tmp_path / "secrets" / "collector-1.secret"),
        "tls": {"ca_file": str(tmp_path / "ca.crt")}}
    assert trust.collector_keys() == {"registry": str(tmp_path / "registry.yaml")}


def test_a_missing_gateway_is_named_with_the_command_that_registers_it(tmp_path: Path) -> None:
    bus = DEMO_FLEET[1]
    operator, _ = _registry(tmp_path, skip=bus.id)
    with pytest.raises(SystemExit) as exc:
        operator_trust(operator, MQTT, DEMO_FLEET)
    message = str(exc.value)
    assert f"- {bus.id} is not active in {tmp_path / 'registry.yaml'}" in message
    assert (f"edge-collector gateways --registry {tmp_path / 'registry.yaml'} add {bus.id}"
            f" --district '{bus.district}' --site '{bus.site}' --kind {bus.kind}"
            f" --secret-file {tmp_path / 'secrets' / f'{bus.id}.secret'}") in message
    assert message.count("\n- ") == 1  # the other gateways and the collector are fine


def test_a_secret_that_does_not_match_the_registry_is_refused_before_anything_starts(
        tmp_path: Path) -> None:
    operator, _ = _registry(tmp_path)
    gw = DEMO_FLEET[0].id
    (tmp_path / "secrets" / f"{gw}.secret").write_text("an old secret\n")
    (tmp_path / "secrets" / "collector-1.secret").unlink()
    with pytest.raises(SystemExit) as exc:
        operator_trust(operator, MQTT, DEMO_FLEET)
    message = str(exc.value)
    assert f"{gw}'s secret in {tmp_path / 'secrets' / f'{gw}.secret'} does not match" in message
    assert "collector-1's secret: cannot read" in message
