"""YAML configs bound to dataclasses: errors name file:line, the key path and the expectation."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from cityedge import yamlconfig
from cityedge.uplink.payload import MAX_TAGS_PER_SENSOR
from cityedge.yamlconfig import ConfigError, bind, format_path, load, parse
from collector import config as collector_config
from collector.config import BatchingConfig, CollectorConfig, MqttSourceConfig
from edge_agent import config as agent_config
from edge_agent.config import AgentConfig
from tests.alerts_helpers import parse_alerts

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Limits:
    port: int = field(default=80, metadata={"min": 1, "max": 65535})
    ratio: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})


@dataclass(frozen=True)
class Device:
    name: str
    port: str
    speed: int | None = None


@dataclass(frozen=True)
class Root:
    name: str
    mode: Literal["fast", "slow"] = "fast"
    limits: Limits = field(default_factory=Limits)
    devices: list[Device] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    levels: tuple[int, ...] = ()
    enabled: bool = False
    extra: Any = None

    def __post_init__(self) -> None:
        names = [d.name for d in self.devices]
        if len(names) != len(set(names)):
            raise ValueError("devices: names must be unique")
        if self.name == "forbidden":
            raise ValueError("something global went wrong")


def bind_text(text: str, cls: type = Root, file: str = "cfg.yaml") -> Any:
    doc = parse(textwrap.dedent(text), file)
    return bind(cls, doc.data, doc)


def error_of(text: str, cls: type = Root, file: str = "cfg.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        bind_text(text, cls, file)
    return info.value


# -- binding that works -----------------------------------------------------------------


def test_binds_a_full_tree() -> None:
    got = bind_text(
        """\
        name: 망원동
        mode: slow
        limits: {port: 8086, ratio: 1}
        devices:
          - {name: a, port: /dev/ttyUSB0}
          - name: b
            port: /dev/ttyUSB1
            speed: 9600
        labels: {floor: 3층}
        levels: [1, 2]
        enabled: true
        extra: {anything: [1, 2]}
        """
    )
    assert got == Root(
        name="망원동",
        mode="slow",
        limits=Limits(port=8086, ratio=1.0),
        devices=[Device("a", "/dev/ttyUSB0"), Device("b", "/dev/ttyUSB1", 9600)],
        labels={"floor": "3층"},
        levels=(1, 2),
        enabled=True,
        extra={"anything": [1, 2]},
    )
    assert isinstance(got.limits.ratio, float)  # an int where a float is expected is widened
    assert isinstance(got.levels, tuple)


def test_defaults_fill_missing_optional_keys() -> None:
    assert bind_text("name: x\n") == Root(name="x")


def test_null_section_means_defaults() -> None:
    assert bind_text("name: x\nlimits: null\n").limits == Limits()


def test_optional_accepts_null() -> None:
    assert (
        bind_text("name: x\ndevices: [{name: a, port: p, speed: null}]\n").devices[0].speed is None
    )


def test_anchors_and_aliases() -> None:
    got = bind_text("name: x\nlabels: &l {a: b}\nextra: *l\n")
    assert got.extra == {"a": "b"} == got.labels


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("1", 1.0), ("0.25", 0.25)])
def test_bounds_are_inclusive(value: str, expected: float) -> None:
    assert bind_text(f"name: x\nlimits: {{ratio: {value}}}\n").limits.ratio == expected


# -- binding errors ---------------------------------------------------------------------

ERRORS = [
    # (yaml, line, key path, words the message must contain)
    ("name: x\nnmae: y\n", 2, "nmae", ["unknown key 'nmae'", "expected one of:", "name", "mode"]),
    ("mode: fast\n", 1, "<top>", ["missing required key 'name'", "a string"]),
    ("name: 5\n", 1, "name", ["expected a string", "got 5"]),
    ("name: x\nenabled: yes please\n", 2, "enabled", ["expected true or false"]),
    ("name: x\nenabled: 1\n", 2, "enabled", ["expected true or false", "got 1"]),
    ("name: x\nmode: medium\n", 2, "mode", ["one of 'fast', 'slow'", "'medium'"]),
    ("name: x\nmode: FAST\n", 2, "mode", ["one of 'fast', 'slow'"]),
    ("name: x\nlimits:\n  port: 0\n", 3, "limits.port", ["expected >= 1", "got 0"]),
    ("name: x\nlimits:\n  port: 65536\n", 3, "limits.port", ["expected <= 65535", "got 65536"]),
    ("name: x\nlimits:\n  ratio: 1.5\n", 3, "limits.ratio", ["expected <= 1.0", "1.5"]),
    ("name: x\nlimits:\n  ratio: -0.1\n", 3, "limits.ratio", ["expected >= 0.0"]),
    ("name: x\nlimits:\n  port: 1.5\n", 3, "limits.port", ["expected an integer", "1.5"]),
    ("name: x\nlimits:\n  port: true\n", 3, "limits.port", ["expected an integer", "True"]),
    ("name: x\nlimits:\n  ratio: high\n", 3, "limits.ratio", ["expected a number", "'high'"]),
    ("name: x\nlimits: [1]\n", 2, "limits", ["expected a mapping"]),
    ("name: x\nlimits:\n  porta: 1\n", 3, "limits.porta", ["unknown key 'porta'", "port, ratio"]),
    (
        "name: x\ndevices:\n  - name: a\n    port: p\n  - name: b\n    port: 5\n",
        6,
        "devices[1].port",
        ["expected a string", "got 5"],
    ),
    (
        "name: x\ndevices:\n  - name: a\n    port: p\n  - name: b\n",
        5,
        "devices[1]",
        ["missing required key 'port'"],
    ),
    (
        "name: x\ndevices:\n  - {name: a, port: p, speed: fast}\n",
        3,
        "devices[0].speed",
        ["expected an integer or null", "'fast'"],
    ),
    ("name: x\ndevices: {a: 1}\n", 2, "devices", ["expected a list of a mapping"]),
    ("name: x\ndevices: [7]\n", 2, "devices[0]", ["expected a mapping", "got 7"]),
    ("name: x\nlabels: {a: 1}\n", 2, "labels.a", ["expected a string", "got 1"]),
    ("name: x\nlabels: [a]\n", 2, "labels", ["a mapping of a string"]),
    ("name: x\nlevels: [1, two]\n", 2, "levels[1]", ["expected an integer", "'two'"]),
    ("- 1\n- 2\n", 1, "<top>", ["expected a mapping"]),
    ("", None, "<top>", ["missing required key 'name'"]),
]


@pytest.mark.parametrize(
    ("text", "line", "path", "words"), ERRORS, ids=[f"{e[2]}:{e[3][0]}" for e in ERRORS]
)
def test_binding_errors(text: str, line: int | None, path: str, words: list[str]) -> None:
    err = error_of(text)
    where = f"cfg.yaml:{line}" if line else "cfg.yaml"
    assert str(err).startswith(f"{where}: {path}: "), str(err)
    for word in words:
        assert word in str(err), (word, str(err))
    assert err.file == "cfg.yaml"
    assert err.line == line
    assert (format_path(err.path) or "<top>") == path


def test_post_init_error_is_placed_at_its_key() -> None:
    text = "name: x\ndevices:\n  - {name: a, port: p}\n  - {name: a, port: q}\n"
    err = error_of(text)
    assert str(err) == "cfg.yaml:2: devices: names must be unique"
    assert err.path == ("devices",)


def test_post_init_error_without_a_key_is_placed_at_the_parent() -> None:
    err = error_of("name: forbidden\n")
    assert str(err) == "cfg.yaml:1: <top>: something global went wrong"


def test_first_error_wins_in_document_order_of_fields() -> None:
    err = error_of("name: 1\nmode: bad\n")
    assert err.path == ("name",)


# -- parse errors -------------------------------------------------------------------------


def test_duplicate_key_names_its_line_and_parent() -> None:
    with pytest.raises(ConfigError) as info:
        parse("name: x\nlimits:\n  port: 1\n  ratio: 0.1\n  port: 2\n", "cfg.yaml")
    assert str(info.value) == "cfg.yaml:5: limits: duplicate key 'port'"


def test_duplicate_top_level_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse("name: x\nmode: fast\nname: y\n", "cfg.yaml")
    assert str(info.value) == "cfg.yaml:3: <top>: duplicate key 'name'"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: [x\n", 2),
        ("name: x\n  mode: y\n", 2),
        ("name: x\nlimits:\n\tport: 1\n", 3),
        ("a: 'unterminated\n", 2),
    ],
)
def test_invalid_yaml(text: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, "cfg.yaml")
    assert str(info.value).startswith(f"cfg.yaml:{line}: <top>: not valid YAML: ")
    assert info.value.line == line


@pytest.mark.parametrize("text", ["name: x\nextra:\n", "- \n- 1\n", "? [1, 2]\n: 3\n"])
def test_empty_value_parses_as_null(text: str) -> None:
    try:
        doc = parse(text, "cfg.yaml")
    except ConfigError:
        return
    assert doc.data in ({"name": "x", "extra": None}, [None, 1], {(1, 2): 3})


# -- files and helpers --------------------------------------------------------------------


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "root.yaml"
    path.write_text("name: 마포\nmode: slow\n", encoding="utf-8")
    assert load(path, Root) == Root(name="마포", mode="slow")


def test_load_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "root.yaml"
    path.write_text("name: x\n\nlimits:\n  port: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path, Root)
    assert str(info.value).startswith(f"{path}:4: limits.port: expected >= 1")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.yaml", Root)
    assert str(info.value).startswith(f"{tmp_path / 'nope.yaml'}: <top>: cannot read")


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("a",), "a"),
        (("a", "b"), "a.b"),
        (("sensors", 1, "port"), "sensors[1].port"),
        (("a", 0, 2), "a[0][2]"),
        ((0,), "[0]"),
    ],
)
def test_format_path(path: yamlconfig.KeyPath, text: str) -> None:
    assert format_path(path) == text


def test_located_line_falls_back_to_the_nearest_parent() -> None:
    doc = parse("a:\n  b: 1\n")
    assert doc.line(("a", "b")) == 2
    assert doc.line(("a", "b", "c", 3)) == 2
    assert doc.line(("zzz",)) == 1


# -- the agent's config ----------------------------------------------------------------

AGENT = """\
gateway:
  id: gw-dust-01
  site:
    district: 강남구
    site: 역삼초등학교 옥상
    kind: dust_zone
sensors:
  - id: pm-1
    port: /dev/ttyUSB0
    profile: pms5003
  - id: pm-2
    port: /dev/ttyUSB1
    profile: pms5003
    baudrate: 9600
    tags: {mount: roof}
"""


def agent(text: str) -> AgentConfig:
    doc = parse(text, "agent.yaml")
    return bind(AgentConfig, doc.data, doc)  # type: ignore[no-any-return]


def agent_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        agent(text)
    return str(info.value)


def test_agent_config_loads() -> None:
    cfg = agent(AGENT)
    assert cfg.gateway.id == "gw-dust-01"
    assert cfg.gateway.site.district == "강남구"
    assert cfg.gateway.site.kind == "dust_zone"
    assert [s.id for s in cfg.sensors] == ["pm-1", "pm-2"]
    assert cfg.sensors[1].baudrate == 9600
    assert cfg.sensors[1].tags == {"mount": "roof"}
    assert cfg.uplink.max_in_flight == 4
    assert cfg.outbox.commit_window == 1.0
    assert cfg.clock_synced == "auto"


def test_agent_load_config_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(AGENT + "uplink:\n  batch_size: 100\n  mqtt: {port: 8883}\n", encoding="utf-8")
    cfg = agent_config.load_config(path)
    assert cfg.uplink.batch_size == 100
    assert cfg.uplink.mqtt.port == 8883


def test_shipped_agent_sample_loads() -> None:
    cfg = agent_config.load_config(REPO / "configs" / "agent.sample.yaml")
    assert cfg.sensors


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("uplink:\n  batch_size: 0\n", "agent.yaml:17: uplink.batch_size: expected >= 1, got 0"),
        ("uplink:\n  batch_size: 5001\n", "agent.yaml:17: uplink.batch_size: expected <= 5000"),
        ("uplink:\n  max_in_flight: 65\n", "agent.yaml:17: uplink.max_in_flight: expected <= 64"),
        ("uplink:\n  ack_timeout: 0.1\n", "agent.yaml:17: uplink.ack_timeout: expected >= 0.5"),
        ("uplink:\n  kind: ftp\n", "agent.yaml:17: uplink.kind: expected one of 'mqtt', 'http'"),
        (
            "uplink:\n  mqtt:\n    port: 70000\n",
            "agent.yaml:18: uplink.mqtt.port: expected <= 65535",
        ),
        ("outbox:\n  commit_window: 61\n", "agent.yaml:17: outbox.commit_window: expected <= 60.0"),
        (
            "clock_synced: maybe\n",
            "agent.yaml:16: clock_synced: expected true or false or one of 'auto'",
        ),
        ("helth_interval: 5\n", "agent.yaml:16: helth_interval: unknown key 'helth_interval'"),
        ("health_interval: 0.5\n", "agent.yaml:16: health_interval: expected >= 1.0"),
    ],
)
def test_agent_config_errors(extra: str, expected: str) -> None:
    assert agent_error(AGENT + extra).startswith(expected)


def test_agent_nested_list_index_path() -> None:
    text = AGENT.replace("port: /dev/ttyUSB1", "port: 1")
    assert agent_error(text) == "agent.yaml:12: sensors[1].port: expected a string, got 1"


def test_agent_site_kind_is_an_enum() -> None:
    text = AGENT.replace("kind: dust_zone", "kind: park")
    assert agent_error(text) == (
        "agent.yaml:6: gateway.site.kind: expected one of 'dust_zone', 'bus_stop', 'apartment', "
        "got 'park'"
    )


def test_agent_missing_gateway() -> None:
    text = AGENT[AGENT.index("sensors:") :]
    assert agent_error(text).startswith("agent.yaml:1: <top>: missing required key 'gateway'")


def test_agent_duplicate_sensor_ids() -> None:
    text = AGENT.replace("id: pm-2", "id: pm-1")
    assert agent_error(text) == ("agent.yaml:7: sensors: sensor ids must be unique, repeated: pm-1")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("id: pm-2", "id: agent", "agent.yaml:11: sensors[1].id: 'agent' is reserved"),
        ("id: pm-2", "id: pm 2", "agent.yaml:11: sensors[1].id: expected letters, digits"),
        ("{mount: roof}", "{gateway: x}", "agent.yaml:15: sensors[1].tags: tag name 'gateway'"),
        ("{mount: roof}", "{my-tag: x}", "agent.yaml:15: sensors[1].tags: tag name 'my-tag'"),
        ("id: gw-dust-01", "id: gw/01", "agent.yaml:2: gateway.id: expected letters, digits"),
    ],
)
def test_agent_cross_checks(old: str, new: str, expected: str) -> None:
    assert agent_error(AGENT.replace(old, new)).startswith(expected)


@pytest.mark.parametrize(("word", "value"), [("yes", True), ("no", False), ("true", True),
                                             ("auto", "auto")])
def test_agent_clock_synced_unquoted_yes_no(word: str, value: object) -> None:
    assert agent(AGENT + f"clock_synced: {word}\n").clock_synced == value


# -- the collector's config ---------------------------------------------------------------

COLLECTOR = """\
writer:
  type: influxdb_v1
  url: http://127.0.0.1:8086
  database: 도시
"""
# The explicit opt-out of the gateway registry (collector configs need one or the other).
INSECURE = "insecure: true\n"


def collector_load(tmp_path: Path, text: str) -> collector_config.LoadedConfig:
    path = tmp_path / "collector.yaml"
    path.write_text(text, encoding="utf-8")
    return collector_config.load_config(path)


def collector_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        collector_load(tmp_path, text)
    return str(info.value).replace(f"{tmp_path / 'collector.yaml'}", "collector.yaml")


def test_collector_config_loads(tmp_path: Path) -> None:
    loaded = collector_load(tmp_path,
                            COLLECTOR + INSECURE + "batching: {max_points: 100, linger: 0}\n")
    cfg = loaded.config
    assert isinstance(cfg, CollectorConfig)
    assert cfg.writer == {"type": "influxdb_v1", "url": "http://127.0.0.1:8086", "database": "도시"}
    assert cfg.mqtt == MqttSourceConfig()
    assert cfg.batching == BatchingConfig(max_points=100, linger=0.0)
    writer = collector_config.make_writer(cfg, loaded.doc)
    assert writer.name == "influxdb_v1"


def test_shipped_collector_sample_loads() -> None:
    loaded = collector_config.load_config(REPO / "configs" / "collector.sample.yaml")
    assert loaded.config.writer["type"] == "influxdb_v1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "writer: {type: influxdb_v9}\n",
            "collector.yaml:1: writer.type: expected one of influxdb_v1, influxdb_v2,"
            " got 'influxdb_v9'",
        ),
        ("writer: {}\n", "collector.yaml:1: writer.type: expected one of influxdb_v1,"
                          " influxdb_v2, got None"),
        ("batching: {}\n", "collector.yaml:1: <top>: missing required key 'writer'"),
        (
            COLLECTOR.replace("http://", "ftp://"),
            "collector.yaml:3: writer.url: expected http:// or https://",
        ),
        (COLLECTOR + "  databse: x\n", "collector.yaml:5: writer.databse: unknown key 'databse'"),
        (COLLECTOR + "  timeout: 0\n", "collector.yaml:5: writer.timeout: expected >= 0.1"),
        (COLLECTOR + "mqtt: [1]\n", "collector.yaml:5: mqtt: expected a mapping or null"),
        (COLLECTOR + "batching:\n  linger: 11\n", "collector.yaml:6: batching.linger: expected <="),
        (
            COLLECTOR + "batching:\n  max_points: 0\n",
            "collector.yaml:6: batching.max_points: expected >= 1",
        ),
    ],
)
def test_collector_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert collector_error(tmp_path, text).startswith(expected)


def test_collector_mqtt_null_disables_the_mqtt_source(tmp_path: Path) -> None:
    loaded = collector_load(tmp_path, COLLECTOR + INSECURE + "mqtt: null\nhttp: {port: 8080}\n")
    assert loaded.config.mqtt is None


def test_collector_needs_a_source(tmp_path: Path) -> None:
    assert collector_error(tmp_path, COLLECTOR + "mqtt: null\n").startswith(
        "collector.yaml:5: mqtt: no source left")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtt:\n  port: 0\n", "collector.yaml:6: mqtt.port: expected >= 1"),
        ("mqtt:\n  prot: 1\n", "collector.yaml:6: mqtt.prot: unknown key 'prot'"),
        (
            "mqtt:\n  receive_maximum: 70000\n",
            "collector.yaml:6: mqtt.receive_maximum: expected <= 65535",
        ),
    ],
)
def test_collector_errors_inside_an_optional_section(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert collector_error(tmp_path, COLLECTOR + text).startswith(expected)


def test_error_inside_an_optional_section_is_at_least_refused(tmp_path: Path) -> None:
    err = collector_error(tmp_path, COLLECTOR + "mqtt:\n  port: 0\n")
    assert err.startswith("collector.yaml:6: mqtt.port: expected >= 1")


# -- secrets from the environment (${NAME}) and from files (<key>_file) ------------------


@dataclass(frozen=True)
class Secrets:
    user: str = "u"
    password: str | None = None
    token: str | None = None
    rules_file: str | None = None  # a real key that ends in _file: left alone


def test_env_reference_whole_and_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_PASSWORD", "s3cret")
    monkeypatch.setenv("CE_USER", "gw-7")
    got = bind_text("""\
        user: ${CE_USER}
        password: ${MQTT_PASSWORD}
        token: "Bearer ${MQTT_PASSWORD}-${CE_USER}"
        """, Secrets)
    assert got == Secrets(user="gw-7", password="s3cret", token="Bearer s3cret-gw-7")


def test_env_default_literal_and_plain_dollars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CE_UNSET", raising=False)
    monkeypatch.setenv("CE_EMPTY", "")
    got = bind_text("""\
        user: ${CE_UNSET:-fallback}
        password: pa$$word$${CE_UNSET}
        token: x${CE_EMPTY:-d}y
        """, Secrets)
    assert got == Secrets(user="fallback", password="pa$$word${CE_UNSET}", token="xdy")


def test_an_unset_variable_is_an_error_at_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQTT_PASSWORD", raising=False)
    err = error_of("""\
        user: a
        password: ${MQTT_PASSWORD}
        """, Secrets)
    assert (err.line, err.path) == (2, ("password",))
    assert "MQTT_PASSWORD" in str(err) and str(err).startswith("cfg.yaml:2: password:")
    assert "malformed" in str(error_of("password: ${not a name}\n", Secrets))


def test_key_file_reads_the_secret(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pw").write_text("s3cret\n")
    (tmp_path / "tok").write_text("line1\nline2")
    config = tmp_path / "cfg.yaml"
    config.write_text(f"password_file: secrets/pw\ntoken_file: {tmp_path / 'tok'}\n"
                      "rules_file: rules.yaml\n")
    got = load(config, Secrets)
    assert got == Secrets(password="s3cret", token="line1\nline2", rules_file="rules.yaml")


def test_key_file_errors_name_the_line(tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text("user: a\npassword_file: missing.txt\n")
    with pytest.raises(ConfigError) as missing:
        load(config, Secrets)
    assert (missing.value.line, missing.value.path) == (2, ("password_file",))
    assert "cannot read" in str(missing.value) and "missing.txt" in str(missing.value)
    (tmp_path / "pw").write_text("x")
    config.write_text("password: inline\npassword_file: pw\n")
    with pytest.raises(ConfigError) as both:
        load(config, Secrets)
    assert both.value.line == 2
    assert "password and password_file are both given" in str(both.value)


def test_agent_config_takes_the_mqtt_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MQTT_PASSWORD", "from-env")
    (tmp_path / "token").write_text("tok-from-file\n")
    config = tmp_path / "agent.yaml"
    config.write_text(textwrap.dedent("""\
        gateway: {id: gw-1, site: {district: d, site: s, kind: dust_zone}}
        sensors: []
        uplink:
          mqtt: {username: gw-1, password: "${MQTT_PASSWORD}"}
          http: {token_file: token}
        """))
    cfg = agent_config.load_config(config)
    assert cfg.uplink.mqtt.password == "from-env"
    assert cfg.uplink.http.token == "tok-from-file"
    assert "from-env" not in repr(cfg) and "tok-from-file" not in repr(cfg)


def test_a_webhook_url_and_secret_from_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WH_SECRET", "hmac-key")
    (tmp_path / "url").write_text("https://hooks.example/services/T0/B0/XXXX\n")
    loaded = parse_alerts("rules: []\nnotifiers:\n  - {type: webhook, url_file: url,"
                          " secret: '${WH_SECRET}'}\n", tmp_path, str(tmp_path / "alerts.yaml"))
    [(_, _, notifier)] = loaded.notifiers
    assert notifier.config.url == "https://hooks.example/services/T0/B0/XXXX"  # type: ignore[attr-defined]
    assert notifier.config.secret == "hmac-key"  # type: ignore[attr-defined]


def test_an_error_does_not_quote_a_secret() -> None:
    err = error_of("password: [hunter2]\n", Secrets)
    assert err.path == ("password",) and "hunter2" not in str(err)
    assert "a list (not shown)" in str(err)


def test_agent_refuses_more_sensor_tags_than_a_batch_may_carry() -> None:
    """With the model tag added, the collector would refuse every batch of that sensor."""

    most = ", ".join(f"t{i}: v" for i in range(MAX_TAGS_PER_SENSOR - 1))
    assert agent(AGENT.replace("tags: {mount: roof}", f"tags: {{{most}}}")).sensors[1].tags
    over = ", ".join(f"t{i}: v" for i in range(MAX_TAGS_PER_SENSOR))
    assert agent_error(AGENT.replace("tags: {mount: roof}", f"tags: {{{over}}}")) == (
        f"agent.yaml:15: sensors[1].tags: at most {MAX_TAGS_PER_SENSOR - 1} (the model tag"
        f" makes {MAX_TAGS_PER_SENSOR}), got {MAX_TAGS_PER_SENSOR}")
