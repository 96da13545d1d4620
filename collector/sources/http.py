"""HTTP source: the uplink for sites without a broker, with the MQTT source's semantics.

``POST {path_prefix}/v1/gateways/{gateway}/batches`` carries one batch (the
same JSON as on MQTT). The response is the end-to-end ack, so it is sent only
after InfluxDB accepted the write (DESIGN invariant 3):

=====  ==========================================================================
200    written: the body is the ack (``cityedge.uplink.encode_ack``, sealed with the
       gateway's key when the keyring has one); delete its seqs
400    refused (bad JSON, unsupported version, gateway mismatch...): ``{"reason", "detail"}``
401    missing or wrong bearer token; 403: this gateway may not send here
408    the body did not arrive within ``body_timeout``
413    body over ``max_body_bytes`` (or more readings than a batch may carry)
429    this gateway is over its rate limit (``limits``); ``Retry-After`` says when
503    not written (within ``write_timeout``, or answered "not written" by the
       pipeline), too many batches waiting, too many
       connections, or shutting down; ``Retry-After`` says when to come back. The
       gateway resends (idempotent).
=====  ==========================================================================

Slow clients cannot hold connections (http_guard.py): headers must be complete
within ``header_timeout``, a body within ``body_timeout``, a keep-alive
connection is closed after ``idle_timeout`` without a request, and at most
``max_connections`` are open at once. Refusals are logged at most once per
reason per ``limits.log_interval``, with a count.

``GET {path_prefix}/v1/health`` answers the counters as JSON (503 while shutting down).

Nothing here outlives a request: a batch whose write is still pending when the
request times out stays in the pipeline and lands anyway; the resend then
writes the identical points again, or joins the pending write when it has the
same (gateway, epoch, seqs). Waiting batches are bounded by ``max_pending``,
the HTTP counterpart of the broker's ReceiveMaximum.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cityedge.logthrottle import DEFAULT_INTERVAL_S
from cityedge.tls import TlsConfig, server_context
from cityedge.uplink import SeqRanges
from cityedge.uplink.payload import MAX_PAYLOAD_BYTES
from cityedge.uplink.seal import KeyRing
from cityedge.uplink.text import brief
from collector.admission import Admission
from collector.delivery import WritePipeline
from collector.ingest import Accepted, Refused
from collector.ratelimit import RateLimiter
from collector.sources.airrohr_http import AirrohrConfig, AirrohrRoute
from collector.sources.http_guard import BACKLOG, ConnectionGuard, connection_cap
from collector.sources.influx_http import InfluxWriteConfig, InfluxWriteRoute
from collector.sources.intake import Intake

log = logging.getLogger(__name__)

API_VERSION = "v1"
JSON = "application/json"
# aiohttp's defaults (8190, as in nginx's large_client_header_buffers): our request
# line is a short path and a gateway sends a few headers, one with a token.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
# Seconds to read and drop the rest of a body after an early answer, so the
# connection can be reused; a client that sends it slower is cut off.
LINGER_S = 2.0


@dataclass(frozen=True)
class HttpSourceConfig:
    host: str = "127.0.0.1"
    # 0 binds a free port (tests); HttpSource.port tells which.
    port: int = field(default=8080, metadata={"min": 0, "max": 65535})
    # Mount point behind a reverse proxy, e.g. "/cityedge"; "" serves at the root.
    path_prefix: str = ""
    max_body_bytes: int = field(
        default=MAX_PAYLOAD_BYTES, metadata={"min": 1024, "max": 64 * 1024 * 1024}
    )
    # https: the server's cert_file and key_file (and ca_file to require client
    # certificates that CA signed); null serves plain http (behind a TLS proxy).
    tls: TlsConfig | None = None
    # Without a registry only (with one, each gateway's secret is its token):
    # one token for every gateway ...
    token: str | None = field(default=None, repr=False)
    # ... and/or one per gateway id, which then only that gateway may use. With
    # per-gateway tokens and no shared token, gateways not listed get 403.
    tokens: dict[str, str] = field(default_factory=dict)
    # Seconds a request waits for its write before answering 503 (keep it below
    # the gateways' HTTP timeout, so they hear the 503 instead of timing out).
    write_timeout: float = field(default=10.0, metadata={"min": 0.1, "max": 300.0})
    # Retry-After on a 503, in seconds.
    retry_after: int = field(default=5, metadata={"min": 1, "max": 3600})
    # Distinct batches waiting for their write at once: bounds our memory while
    # InfluxDB is slow or down.
    max_pending: int = field(default=200, metadata={"min": 1, "max": 65535})
    # Seconds from connecting to the end of the first request's headers (slowloris).
    header_timeout: float = field(default=10.0, metadata={"min": 0.1, "max": 300.0})
    # Seconds to receive a whole body: 1 MB (5,000 readings) over a 256 kbit/s link
    # takes about 30 s.
    body_timeout: float = field(default=60.0, metadata={"min": 0.1, "max": 3600.0})
    # Seconds a keep-alive connection may sit idle between requests.
    idle_timeout: float = field(default=30.0, metadata={"min": 0.1, "max": 3600.0})
    # Open connections at once (lowered to fit the descriptor limit, ulimit -n).
    max_connections: int = field(default=1000, metadata={"min": 1, "max": 1_000_000})
    # Routes for what is already in the field, null: off (docs/integrations.md):
    # airrohr devices' pushes, InfluxDB's /write and /api/v2/write.
    airrohr: AirrohrConfig | None = None
    influx_write: InfluxWriteConfig | None = None

    def __post_init__(self) -> None:
        p = self.path_prefix
        if p and (not p.startswith("/") or p.endswith("/") or "{" in p or "}" in p):
            raise ValueError(
                f"path_prefix: expected '' or '/name' without a trailing '/', got {p!r}"
            )
        if self.tls is not None and self.tls.cert_file is None:
            raise ValueError("tls: https needs cert_file and key_file")


@dataclass
class HttpSourceStats:
    requests: int = 0
    batches: int = 0  # acked with 200
    readings: int = 0  # in acked batches
    joined: int = 0  # resends that joined a write already pending
    busy: int = 0  # 503: max_pending reached or shutting down
    write_timeouts: int = 0  # 503: the write took longer than write_timeout
    rate_limited: int = 0  # 429


def _reply(status: int, reason: str, detail: str, **headers: str) -> web.Response:
    body = json.dumps({"reason": reason, "detail": detail}, ensure_ascii=False)
    return web.Response(status=status, text=body, content_type=JSON, headers=headers)


class HttpSource:
    """An aiohttp server that turns each POSTed batch into a pipeline write and acks it."""

    def __init__(self, config: HttpSourceConfig, pipeline: WritePipeline, *,
                 admission: Admission | None = None,
                 keyring: KeyRing | None = None,
                 limiter: RateLimiter | None = None,
                 log_interval: float = DEFAULT_INTERVAL_S) -> None:
        self.config = config
        self.pipeline = pipeline
        # Without a registry (insecure: true) tokens come from the config.
        self.intake = Intake(log, admission=admission, keyring=keyring, limiter=limiter,
                             log_interval=log_interval)
        self.refused = self.intake.refused
        self.log = self.intake.log
        self.stats = HttpSourceStats()
        self._writing: dict[tuple[str, str, SeqRanges], asyncio.Future[None]] = {}
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._port: int | None = None
        self.guard = ConnectionGuard(config.max_connections, config.header_timeout,
                                     config.retry_after, self._connection_refused)
        self.app = web.Application(client_max_size=config.max_body_bytes,
                                   middlewares=[self.guard.middleware])
        prefix = config.path_prefix
        self.app.router.add_post(f"{prefix}/{API_VERSION}/gateways/{{gateway}}/batches",
                                 self._batches)
        self.app.router.add_get(f"{prefix}/{API_VERSION}/health", self._health)
        self.airrohr: AirrohrRoute | None = None
        if config.airrohr is not None:
            self.airrohr = AirrohrRoute(self, config.airrohr)
            self.app.router.add_post(f"{prefix}{config.airrohr.path}", self.airrohr.handle)
        self.influx_write: InfluxWriteRoute | None = None
        if config.influx_write is not None:
            iw = self.influx_write = InfluxWriteRoute(self, config.influx_write)
            self.app.router.add_post(f"{prefix}{config.influx_write.v1_path}", iw.v1)
            self.app.router.add_post(f"{prefix}{config.influx_write.v2_path}", iw.v2)

    @property
    def port(self) -> int:
        """The bound port (config.port, or the one picked for port 0)."""
        assert self._port is not None, "start() first"
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls is not None else "http"
        return f"{scheme}://{self.config.host}:{self.port}{self.config.path_prefix}"

    @property
    def pending_batches(self) -> int:
        return len(self._writing)

    async def start(self) -> None:
        c = self.config
        # A request may outlive close() by at most its write_timeout.
        self._runner = web.AppRunner(
            self.app, access_log=None, shutdown_timeout=c.write_timeout + 1.0,
            # A handler whose client hung up is cancelled (its write still lands).
            handler_cancellation=True,
            keepalive_timeout=c.idle_timeout,
            # The request line is a short path; headers are a few, with one token.
            max_line_size=MAX_LINE_BYTES, max_field_size=MAX_FIELD_BYTES,
            # After an early answer (408, 413), read what is left of a body this long.
            lingering_time=LINGER_S,
        )
        await self._runner.setup()
        self.guard.server = self._runner.server
        self.guard.max_connections = connection_cap(c.max_connections)
        ssl = server_context(c.tls) if c.tls is not None else None
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self.guard, c.host, c.port, backlog=BACKLOG,
                                                  ssl=ssl)
        self._port = int(self._listener.sockets[0].getsockname()[1])
        log.info("http source listening on %s (at most %d connections)", self.url,
                 self.guard.max_connections)

    async def close(self) -> None:
        """Stop listening, then answer the requests in progress (with the ack when their
        write lands within write_timeout). Call it while the pipeline still runs."""
        self._closing = True
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None

    def _connection_refused(self, reason: str) -> None:
        self.log.note(reason, f"connection closed: {reason}", time.monotonic())

    # -- handlers -------------------------------------------------------------
    def _authorize(self, request: web.Request, gateway: str) -> web.Response | None:
        if self.intake.admission is not None:
            return self._authorize_registered(request, gateway, self.intake.admission)
        c = self.config
        if c.token is None and not c.tokens:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return self._deny(401, gateway, "missing bearer token")
        expected = c.tokens.get(gateway, c.token)
        if expected is None:
            return self._deny(403, gateway, "this gateway has no token here")
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            return self._deny(401, gateway, "wrong token")
        return None

    def _authorize_registered(self, request: web.Request, gateway: str,
                              admission: Admission) -> web.Response | None:
        """The gateway is in the registry, not revoked, and the token is its secret."""
        refused = self.intake.refusal(gateway)
        if refused is not None:
            return self._deny(403, gateway, refused.detail, refused.reason)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return self._deny(401, gateway, "missing bearer token")
        if not admission.token_ok(gateway, given.strip()):
            return self._deny(401, gateway, "wrong token")
        return None

    def _deny(self, status: int, gateway: str, detail: str,
              reason: str | None = None) -> web.Response:
        reason = reason or ("unauthorized" if status == 401 else "forbidden")
        self._count_refusal(gateway, reason, detail)
        headers = {"WWW-Authenticate": 'Bearer realm="cityedge"'} if status == 401 else {}
        return _reply(status, reason, detail, **headers)

    def _unavailable(self, reason: str, detail: str) -> web.Response:
        return _reply(503, reason, detail, **{"Retry-After": str(self.config.retry_after)})

    async def _batches(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        gateway = request.match_info["gateway"]
        early = self._authorize(request, gateway)
        if early is None and self._closing:
            self.stats.busy += 1
            early = self._unavailable("shutting_down", "this collector is stopping")
        if early is None:
            early = self._over_limit(gateway, self._declared(request))
        if early is not None:
            return early
        result = await self._accept(request, gateway)
        if isinstance(result, web.Response):
            return result
        return await self._write_then_ack(result)

    async def _accept(self, request: web.Request, gateway: str) -> Accepted | web.Response:
        body = await self._read_body(request, gateway)
        if isinstance(body, web.Response):
            return body
        result = self.intake.ingest(body, gateway)
        if isinstance(result, Refused):
            return self._refuse(gateway, result.reason, result.detail)
        return result

    async def _read_body(self, request: web.Request, gateway: str) -> bytes | web.Response:
        """The body, within max_body_bytes and body_timeout, paid for at the rate limit."""
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._refuse(gateway, "too_large", f"{request.content_length} bytes > {limit}")
        try:
            async with asyncio.timeout(self.config.body_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(gateway, "too_large", f"body over {limit} bytes")
        except web.RequestPayloadError as exc:  # e.g. a Content-Encoding it is not in
            return self._refuse(gateway, "bad_body", str(exc).replace("\n", " ")[:200])
        except TimeoutError:
            return self._refuse(gateway, "body_timeout",
                                f"body not received within {self.config.body_timeout:g} s")
        paid = self._declared(request)
        if len(body) > paid and (early := self._over_limit(gateway, len(body), paid)):
            return early  # a body longer than announced (chunked) pays the rest
        return body

    async def _write_then_ack(self, accepted: Accepted) -> web.Response:
        key = (accepted.gateway, accepted.ack.epoch, accepted.ack.seqs)
        fut = self._writing.get(key)
        if fut is not None:
            self.stats.joined += 1
        elif len(self._writing) >= self.config.max_pending:
            self.stats.busy += 1
            return self._unavailable(
                "busy", f"{len(self._writing)} batches are waiting for the database"
            )
        else:
            fut = self.pipeline.submit(accepted)
            self._writing[key] = fut
            fut.add_done_callback(functools.partial(self._forget, key))

        # asyncio.wait never cancels fut: an unanswered write still lands.
        done, _ = await asyncio.wait({fut}, timeout=self.config.write_timeout)
        if done and not fut.cancelled() and (exc := fut.exception()) is not None:
            # The pipeline answered "not written" (a series limit, say): nothing is
            # acked; the gateway resends after Retry-After.
            self._count_refusal(accepted.gateway, "not_written", str(exc))
            return self._unavailable("not_written", str(exc)[:300])
        if not done or fut.cancelled():
            self.stats.write_timeouts += 1
            return self._unavailable(
                "write_timeout", f"not written within {self.config.write_timeout:g} s"
            )
        self.stats.batches += 1
        self.stats.readings += accepted.readings
        return web.Response(body=self.intake.ack_bytes(accepted.ack, time.time_ns()),
                            content_type=JSON)

    def _forget(self, key: tuple[str, str, SeqRanges], fut: asyncio.Future[None]) -> None:
        if self._writing.get(key) is fut:
            del self._writing[key]

    def _refuse(self, gateway: str, reason: str, detail: str) -> web.Response:
        self._count_refusal(gateway, reason, detail)
        status = {"too_large": 413, "body_timeout": 408}.get(reason, 400)
        headers = {"Connection": "close"} if status == 408 else {}
        return _reply(status, reason, detail, **headers)

    def _declared(self, request: web.Request) -> int:
        """The body's size as announced (what the rate limit charges before reading it)."""
        return min(request.content_length or 0, self.config.max_body_bytes)

    def _over_limit(self, gateway: str, size: int, paid: int = 0) -> web.Response | None:
        """429 with Retry-After when this gateway is over its rate limit (ids no gateway
        can have are not tracked: ingest refuses them before parsing)."""
        wait = self.intake.over_limit(gateway, time.monotonic(), size, paid)
        if not wait:
            return None
        self.stats.rate_limited += 1
        detail = f"over {self.intake.limiter.rate:g} batches/s; try again in {wait:.1f} s"
        self._count_refusal(gateway, "rate_limited", detail)
        return _reply(429, "rate_limited", detail, **{"Retry-After": str(math.ceil(wait))})

    def _count_refusal(self, gateway: str, reason: str, detail: str) -> None:
        self.intake.count(reason, f"refused batch from {brief(gateway)}: {reason}: "
                          f"{detail[:300]}", time.monotonic())

    def health(self) -> dict[str, Any]:
        p = self.pipeline.stats
        return {
            "status": "stopping" if self._closing else "ok",
            **vars(self.stats),
            "refused_batches": sum(self.refused.values()),
            "refused": dict(self.refused),
            "connections_refused": dict(self.guard.counts),
            "pending_batches": len(self._writing),
            **(self.airrohr.health() if self.airrohr is not None else {}),
            **(self.influx_write.health() if self.influx_write is not None else {}),
            "pipeline": {
                **self.pipeline.health_fields(),
                "not_written": dict(p.not_written),
                "last_error": p.last_error,
            },
        }

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response(self.health(), status=503 if self._closing else 200)
