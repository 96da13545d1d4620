"""auto_register: unlisted devices are bounded together (a shared rate, a cap on how many),
and every push the firmware loses (429/503: it never resends) is counted by reason."""

from __future__ import annotations

from pathlib import Path

from collector.sources.airrohr_http import AutoRegister
from tests.airrohr_firmware import body, request
from tests.unit.test_airrohr_http import PATH, registry, rig
from tests.unit.test_http_source import run

AUTO = AutoRegister("강남구", "unknown", "dust_zone")


def test_invented_ids_share_one_rate_and_a_cap(tmp_path: Path) -> None:
    path, _ = registry(tmp_path)

    async def main() -> None:
        async with rig(path, auto_register=AUTO, max_auto_admitted=50, auto_rate=0.01,
                       auto_burst=30) as r:
            async def push(chip: str) -> int:
                raw = request("127.0.0.1", r.source.port, PATH, body(chip=chip), chip=chip)
                status, _ = await r.send(raw)
                return status
            fresh = [await push(str(10_000 + i)) for i in range(300)]
            assert fresh.count(200) == 30 and fresh.count(429) == 270
            gateways = {p.tags["gateway"] for p in r.writer.written}
            assert len(gateways) == 30
            assert r.source.airrohr is not None
            health = r.source.airrohr.health()
            assert health["airrohr_lost"] == 270 == health["airrohr_lost_rate_limited"]
            assert health["airrohr_auto_devices"] == 30
    run(main())


def test_past_the_cap_unlisted_devices_are_refused_counted(tmp_path: Path) -> None:
    path, _ = registry(tmp_path)

    async def main() -> None:
        async with rig(path, auto_register=AUTO, max_auto_admitted=3) as r:
            async def push(chip: str) -> int:
                raw = request("127.0.0.1", r.source.port, PATH, body(chip=chip), chip=chip)
                status, _ = await r.send(raw)
                return status
            assert [await push(str(10_000 + i)) for i in range(5)] == [200, 200, 200, 403, 403]
            assert await push("10000") == 200  # one admitted before still is
            assert r.source.refused["auto_register_full"] == 2
    run(main())


def test_a_push_answered_503_is_counted_lost(tmp_path: Path) -> None:
    path, _ = registry(tmp_path)

    async def main() -> None:
        async with rig(path, auto_register=AUTO) as r:
            r.writer.gate.clear()  # the database is slow: not written in time
            raw = request("127.0.0.1", r.source.port, PATH, body(chip="777"), chip="777")
            status, _ = await r.send(raw)
            r.writer.gate.set()
            assert status == 503
            assert r.source.airrohr is not None
            assert r.source.airrohr.health()["airrohr_lost_write_timeout"] == 1
    run(main())
