"""Writes line protocol to InfluxDB 2.x, 3.x or Cloud through influxdb-client's async write API.

The same contract as the 1.x writer (collector/writers/influxdb_v1/): ``write``
returns only when the database accepted the points (204), and otherwise raises
a classified ``WriteError`` (collector/writers/errors.py): 400 a ``PartialWrite``
read from 2.x's ``{"code", "message"}`` answer, 413 ``TooLarge``, 429/503
``Throttled`` with the answer's Retry-After, everything else ``Retryable``.
The client's own retries are off (its async write API has none): the
collector's pipeline retries, splits and dead-letters, as for 1.x.

The token travels in ``Authorization: Token``; org and bucket name where the
points go (3.x and Cloud Serverless take the database as the bucket).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from cityedge import yamlconfig
from cityedge.redact import redact_text
from collector import lineprotocol
from collector.lineprotocol import Point
from collector.writers.base import PING_TIMEOUT_S
from collector.writers.errors import DeliveryRejected, PartialWrite, Retryable, classify
from collector.writers.influxdb_v2.refusal import parse_refusal


@dataclass(frozen=True)
class InfluxV2Config:
    url: str = "http://127.0.0.1:8086"
    org: str = "cityedge"
    bucket: str = "cityedge"
    token: str | None = field(default=None, repr=False)
    timeout: float = field(default=10.0, metadata={"min": 0.1})
    # gzip the request body (Cloud bills by bytes in; InfluxDB 2.x and 3.x accept it).
    gzip: bool = False

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url: expected http:// or https://, got {self.url!r}")
        if not self.org or not self.bucket:
            raise ValueError("org and bucket: expected names")


class InfluxV2Writer:
    name = "influxdb_v2"

    def __init__(self, config: InfluxV2Config) -> None:
        self.config = config
        self._client: InfluxDBClientAsync | None = None
        # /api/v2/write requests sent (answered or not): what a write costs the database.
        self.requests = 0

    @classmethod
    def from_options(
        cls, options: dict[str, Any], doc: yamlconfig.Located, path: yamlconfig.KeyPath
    ) -> InfluxV2Writer:
        return cls(yamlconfig.bind(InfluxV2Config, options, doc, path))

    async def start(self) -> None:
        c = self.config
        self._client = InfluxDBClientAsync(url=c.url, token=c.token or "", org=c.org,
                                           timeout=int(c.timeout * 1000), enable_gzip=c.gzip)

    @property
    def target(self) -> str:
        return f"InfluxDB 2.x {redact_text(self.config.url)} bucket {self.config.bucket}"

    async def problem(self) -> str | None:
        """GET /ping (204 from InfluxDB 2.x and servers that speak its write API)."""
        assert self._client is not None, "start() first"
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                await self._client.ping()
        except ApiException as exc:
            return f"/ping answered {exc.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return redact_text(f"{type(exc).__name__}: {exc}".rstrip(": "))
        return None

    async def write(self, points: Sequence[Point]) -> None:
        assert self._client is not None, "start() first"
        body = lineprotocol.encode(list(points))
        self.requests += 1
        try:
            # WritePrecision.NS is a plain str, the annotation the class itself.
            await self._client.write_api().write(
                bucket=self.config.bucket, org=self.config.org, record=body,
                write_precision=WritePrecision.NS)  # type: ignore[arg-type]
        except ApiException as exc:
            body_ = exc.body  # bytes from the async client, str from the sync one
            text = (body_.decode("utf-8", "replace") if isinstance(body_, bytes)
                    else str(body_ or ""))
            error = classify(int(exc.status or 0), text, exc.headers or {})
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Retryable(f"write: {type(exc).__name__}: {redact_text(str(exc))}") from None
        else:
            return
        if isinstance(error, DeliveryRejected):
            raise PartialWrite(str(error), parse_refusal(text))
        raise error

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()  # type: ignore[no-untyped-call]
            self._client = None
