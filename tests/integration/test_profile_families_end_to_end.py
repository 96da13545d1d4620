"""The sensor families added by YAML alone, end to end: pty, agent, broker, collector, Influx.

One gateway carries one simulated device per profile of four families (the
Plantower PMS3003/PMS5003S/PMS5003ST, the Winsen sensors, the Honeywell
HPMA115s, the XY-MD02 Modbus transmitter), all real processes on the secure
broker, as in test_profiles_end_to_end.py whose fleet this reuses. Each test
checks that exactly the readings a family's devices emitted, with exactly
those values, landed in InfluxDB in every measurement their profiles write.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulators.services import InfluxDB
from tests.integration.test_profiles_end_to_end import (
    CASES,
    PROFILES,
    Case,
    Run,
    check_landed,
    run_fleet,
)
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration

FAMILIES: dict[str, list[Case]] = {
    "plantower": [
        Case("pm-3003", "pms3003", {}),
        Case("pm-5003s", "pms5003s", {"mode": "passive", "poll_interval": 0.1}),
        Case("pm-5003st", "pms5003st", {}),
    ],
    "winsen": [
        Case("zh03b-upload", "zh03b", {}),
        Case("zh03b-qa", "zh03b", {"mode": "passive", "poll_interval": 0.1}),
        Case("zh06", "zh06_i", {}),
        Case("co2", "mhz19b", {"poll_interval": 0.1}),
    ],
    "honeywell": [
        Case("hpm-s0", "hpma115s0", {}),
        Case("hpm-s0-passive", "hpma115s0", {"mode": "passive", "poll_interval": 0.1}),
        Case("hpm-c0", "hpma115c0", {}),
        Case("hpm-c0-passive", "hpma115c0", {"mode": "passive", "poll_interval": 0.1}),
    ],
    "modbus_xy_md02": [
        Case("xy-md02", "xy_md02", {"poll_interval": 0.1, "modbus_slave": 3}, slave=3),
    ],
}


def test_every_profile_has_an_end_to_end_case() -> None:
    covered = {case.profile for case in CASES} | {
        case.profile for cases in FAMILIES.values() for case in cases
    }
    assert sorted(set(PROFILES) - covered) == []


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory, secure_broker: SecureFleet,
             influxdb: InfluxDB) -> Iterator[Run]:
    cases = [case for family in FAMILIES.values() for case in family]
    with secure_broker.scope():
        yield from run_fleet(tmp_path_factory, secure_broker, influxdb, cases, "gw-families")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_readings_land_with_the_values_sent(families: Run, family: str) -> None:
    for case in FAMILIES[family]:
        check_landed(families, case)
