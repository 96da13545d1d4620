"""Writes line protocol to InfluxDB 1.x over HTTP (aiohttp).

Credentials travel in an ``Authorization: Basic`` header, which InfluxDB 1.x
accepts as well as its ``u``/``p`` query parameters: a query string ends up in
proxies' and InfluxDB's own request logs, and in every error that quotes the URL.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from cityedge import yamlconfig
from cityedge.redact import redact_text
from collector import lineprotocol
from collector.lineprotocol import Point
from collector.schema.groups import group_of
from collector.schema.retention import RetentionLayout
from collector.writers.base import PING_TIMEOUT_S
from collector.writers.errors import (
    UNNAMED,
    DeliveryRejected,
    PartialWrite,
    RefusalKind,
    Retryable,
    classify,
)
from collector.writers.influxdb_v1.refusal import parse_refusal

# Seconds a /ping may take before InfluxDB counts as unreachable (start-up check).


@dataclass(frozen=True)
class InfluxV1Config:
    url: str = "http://127.0.0.1:8086"
    database: str = "cityedge"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    retention_policy: str | None = None
    # The policies of ``edge-collector influx-setup`` (collector/schema/retention.py):
    # readings to raw, health and events to their own; set, each write names its
    # policy. null: everything to ``retention_policy`` (or the database's default).
    retention: RetentionLayout | None = None
    timeout: float = field(default=10.0, metadata={"min": 0.1})
    create_database: bool = True

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url: expected http:// or https://, got {self.url!r}")
        if self.retention is not None and self.retention_policy is not None:
            raise ValueError("retention_policy: one policy for everything, or retention:"
                             " one per kind of point; drop one of the two")


class InfluxV1Writer:
    name = "influxdb_v1"

    def __init__(self, config: InfluxV1Config) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        # /write requests sent (answered or not): what a write costs InfluxDB.
        self.requests = 0

    @classmethod
    def from_options(
        cls, options: dict[str, Any], doc: yamlconfig.Located, path: yamlconfig.KeyPath
    ) -> InfluxV1Writer:
        return cls(yamlconfig.bind(InfluxV1Config, options, doc, path))

    def _params(self, rp: str | None) -> dict[str, str]:
        p = {"db": self.config.database, "precision": "ns"}
        if rp:
            p["rp"] = rp
        return p

    def _by_policy(self, points: Sequence[Point]) -> list[tuple[str | None, list[Point]]]:
        """The points grouped by the policy they are written to, in order of first use."""
        layout = self.config.retention
        if layout is None:
            return [(self.config.retention_policy, list(points))]
        groups: dict[str | None, list[Point]] = {}
        for p in points:
            groups.setdefault(layout.policy_for(group_of(p.measurement)), []).append(p)
        return list(groups.items())

    def _headers(self) -> dict[str, str]:
        c = self.config
        if c.username is None:
            return {}
        pair = f"{c.username}:{c.password or ''}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout), headers=self._headers()
        )
        if self.config.create_database:
            # CREATE DATABASE is idempotent in 1.x; a database down now is retried by write().
            with contextlib.suppress(Retryable):
                await self.query(f'CREATE DATABASE "{self.config.database}"', post=True)

    @property
    def target(self) -> str:
        return f"InfluxDB {redact_text(self.config.url)}"

    async def problem(self) -> str | None:
        """GET /ping (204 from a running InfluxDB 1.x), within PING_TIMEOUT_S."""
        assert self._session is not None, "start() first"
        try:
            async with self._session.get(f"{self.config.url}/ping",
                                         timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT_S)
                                         ) as resp:
                return None if resp.status in (200, 204) else f"/ping answered {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return redact_text(f"{type(exc).__name__}: {exc}".rstrip(": "))

    async def query(self, q: str, *, post: bool = False) -> dict[str, Any]:
        assert self._session is not None, "start() first"
        params = {"q": q, "db": self.config.database}
        method = "POST" if post else "GET"
        try:
            async with self._session.request(
                method, f"{self.config.url}/query", params=params
            ) as resp:
                body = await resp.text()
                if resp.status != 200:
                    raise classify(resp.status, body, resp.headers)
                result: dict[str, Any] = await resp.json(content_type=None)
                return result
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Retryable(f"query: {type(exc).__name__}: {redact_text(str(exc))}") from None

    async def write(self, points: Sequence[Point]) -> None:
        """One request per retention policy; a refusal raises at the first that fails (the
        ones before are written, and a retry writes them again as the same points)."""
        groups = self._by_policy(points)
        for rp, group in groups:
            try:
                await self._write(rp, group)
            except PartialWrite as exc:
                if len(groups) > 1 and exc.refusal.kind is RefusalKind.RETENTION:
                    # "The N oldest" of one policy's points are not the batch's N oldest:
                    # say nothing, and the pipeline finds them by halving.
                    raise PartialWrite(str(exc), UNNAMED) from None
                raise

    async def _write(self, rp: str | None, points: list[Point]) -> None:
        assert self._session is not None, "start() first"
        body = lineprotocol.encode(points)
        self.requests += 1
        try:
            async with self._session.post(
                f"{self.config.url}/write", params=self._params(rp), data=body
            ) as resp:
                if resp.status == 204:
                    return
                text = await resp.text()
                error = classify(resp.status, text, resp.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Retryable(f"write: {type(exc).__name__}: {redact_text(str(exc))}") from None
        if resp.status == 404 and self.config.create_database and "database not found" in text:
            # InfluxDB was down when we started, or the database was dropped since:
            # create it; the write is retried (404 is retryable).
            with contextlib.suppress(Retryable):
                await self.query(f'CREATE DATABASE "{self.config.database}"', post=True)
        if isinstance(error, DeliveryRejected):
            # A partial write: what InfluxDB says it refused (the rest is written).
            raise PartialWrite(str(error), parse_refusal(text))
        raise error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
