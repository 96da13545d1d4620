"""The HTTP source with a registry, over https: the agent's own transport against it.

A real aiohttp server with a certificate from our CA (edge-collector pki), a
real WritePipeline, and the in-memory writer of test_http_source.py.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import aiohttp
import pytest

from cityedge.tls import TlsConfig, client_context
from cityedge.uplink import encode_batch
from collector import pki
from collector.admission import Admission
from collector.delivery import WritePipeline
from collector.registry import model
from collector.registry.live import LiveRegistry
from collector.sources.http import HttpSource, HttpSourceConfig
from edge_agent.transports.http import HttpTransport, HttpUplinkConfig
from tests.conftest import _need
from tests.unit.test_http_source import TIMEOUT, GatedWriter, batch

NOW = "2024-05-01T09:00:00Z"


def test_https_ingest_checks_the_registry_and_the_agent_verifies_the_collector(
        tmp_path: Path) -> None:
    _need("openssl", "openssl")
    pki.init_ca(tmp_path / "pki")
    key, crt = pki.issue(tmp_path / "pki", "collector", server=True, hosts=("127.0.0.1",))
    reg, secret = model.add_gateway(model.Registry(), "gw-1", district="강남구", site="역삼역",
                                    kind="bus_stop", now=NOW)
    reg, _ = model.add_gateway(reg, "gw-old", district="d", site="s", kind="apartment", now=NOW)
    model.save(tmp_path / "registry.yaml", model.revoke(reg, "gw-old", now=NOW))
    trust = TlsConfig(ca_file=str(tmp_path / "pki" / "ca.crt"))

    async def main() -> None:
        writer = GatedWriter()
        pipeline = WritePipeline(writer, max_points=1000, linger=0)
        task = asyncio.create_task(pipeline.run())
        source = HttpSource(
            HttpSourceConfig(port=0, tls=TlsConfig(cert_file=str(crt), key_file=str(key))),
            pipeline, admission=Admission(LiveRegistry(tmp_path / "registry.yaml")))
        await source.start()
        assert source.url.startswith("https://127.0.0.1:")
        try:
            # The agent's transport: https verified against our CA, the secret as token.
            agent = HttpTransport(HttpUplinkConfig(url=source.url, token=secret, tls=trust),
                                  "gw-1", max_in_flight=1)
            await agent.start()
            assert agent.send(encode_batch(batch(gateway="gw-1")))
            ack = await asyncio.wait_for(agent.next_ack(), TIMEOUT)
            assert ack.gateway == "gw-1" and list(ack.seqs) == [1, 2, 3]
            await agent.close()
            assert {(p.tags["district"], p.tags["site"]) for p in writer.written} == {
                ("강남구", "역삼역")}  # the payload said 마포구 / 망원동

            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=client_context(trust))) as s:
                async def post(gateway: str, token: str | None) -> tuple[int, str]:
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    async with s.post(f"{source.url}/v1/gateways/{gateway}/batches",
                                      data=encode_batch(batch(gateway=gateway)),
                                      headers=headers) as r:
                        return r.status, json.loads(await r.read())["reason"]

                assert await post("gw-1", secret + "x") == (401, "unauthorized")
                assert await post("gw-1", None) == (401, "unauthorized")
                assert await post("gw-9", secret) == (403, "unknown_gateway")
                assert await post("gw-old", secret) == (403, "revoked_gateway")
            assert dict(source.refused) == {"unauthorized": 2, "unknown_gateway": 1,
                                            "revoked_gateway": 1}

            # A client that trusts only the system's CAs refuses our collector.
            async with aiohttp.ClientSession() as s:
                with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
                    await s.get(f"{source.url}/v1/health")
                assert isinstance(info.value.certificate_error, ssl.SSLCertVerificationError)
        finally:
            await source.close()
            await pipeline.close()
            await task

    asyncio.run(asyncio.wait_for(main(), 30))
