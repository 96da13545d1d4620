"""The HTTP source's InfluxDB write endpoints: Telegraf and Influx clients write through us.

``POST {path_prefix}/write`` (1.x: ``db`` required, ``rp`` ignored, ``precision``
n/u/ms/s/m/h, credentials as ``u``/``p`` arguments, basic auth or
``Authorization: Token``) and ``POST {path_prefix}/api/v2/write`` (2.x:
``bucket`` and ``org``/``orgID`` required, ``precision`` ns/us/ms/s,
``Authorization: Token``). Bodies may be gzip (``Content-Encoding: gzip``).
Database, retention policy, bucket and org are checked for presence and not
used: every point goes to the collector's own database.

Who writes: a registered gateway. Its token is ``<gateway id>:<secret>`` (the
secret ``edge-collector gateways add`` printed); as basic auth or u/p, the
user is the gateway id and the password the secret. The registry's site tags
go on every point, and ``gateway`` is the writer's, whatever the line said.
Without a registry (``insecure: true``): ``http.token``/``tokens`` as the
secret when set, else anyone (the gateway id from the credentials, or
``line-protocol``).

Answers, as InfluxDB gives them (1.x ``{"error": ...}``, 2.x ``{"code", "message"}``):

=====  ==========================================================================
204    written (answered only after the database accepted it)
400    a line could not be stored: the message names the first (``line 3: ...``);
       the other lines are written and every bad one is dead-lettered (InfluxDB's
       "partial write"; clients do not resend a 400). Also: missing db/bucket/org,
       bad precision, a body that is not UTF-8 or gzip.
401    missing or wrong credentials; 403: the gateway is unknown or revoked
413    body (or its gunzipped size) over ``max_body_bytes``, over 5,000 lines, or
       needing more than 32 batches
429    the gateway is over its rate limit (a body costs three times its bytes);
       503: not written in time (a batch of the body did not land: "partial
       write", resent whole), too many writes waiting, or stopping. Both with
       Retry-After.
=====  ==========================================================================
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from cityedge.uplink.payload import ID_RE, Ack
from cityedge.uplink.seqranges import SeqRanges
from collector.deadletter import dead_letter
from collector.ingest import Accepted, Refused, ingest
from collector.sources import lineproto_in as lp

if TYPE_CHECKING:
    from collector.sources.http import HttpSource

JSON = "application/json"
_T = TypeVar("_T")
ANONYMOUS = "line-protocol"
# 2.x error codes by status (InfluxDB's API "code" values).
V2_CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not found",
            408: "request timeout", 413: "request too large", 429: "too many requests",
            503: "unavailable"}


# A line-protocol byte costs the rate limit this many JSON-batch bytes (measured: parse
# and ingest of a Telegraf body ~1.1 us/B, ingest of a JSON batch ~0.35 us/B).
LINE_PROTOCOL_COST = 3
# Bodies over this many bytes are parsed in a worker thread, not on the event loop.
THREAD_BYTES = 64 * 1024


def _parse_and_ingest(body: bytes, gateway: str, precision: str, now_ns: int,
                      site: dict[str, str] | None
                      ) -> tuple[lp.Lines, list[Accepted | Refused]] | lp.LineError:
    """The body's batches, each through the collector's own ingest; or why not."""
    try:
        lines = lp.to_batch(body, gateway, precision, now_ns)
    except lp.LineError as exc:
        return exc
    return lines, [ingest(part.payload, gateway, site, "line_protocol") for part in lines.parts]


async def _now(fn: Callable[..., _T], *args: Any) -> _T:
    return fn(*args)


@dataclass(frozen=True)
class InfluxWriteConfig:
    v1_path: str = "/write"
    v2_path: str = "/api/v2/write"

    def __post_init__(self) -> None:
        for p in (self.v1_path, self.v2_path):
            if not p.startswith("/") or "{" in p or "}" in p:
                raise ValueError(f"expected '/name', got {p!r}")


@dataclass
class InfluxWriteStats:
    writes: int = 0  # answered 204
    partial_writes: int = 0  # answered 400 after writing the good lines
    lines: int = 0  # readings written


def influx_error(v2: bool, status: int, message: str, **headers: str) -> web.Response:
    doc = ({"code": V2_CODES.get(status, "internal error"), "message": message} if v2
           else {"error": message})
    return web.Response(status=status, text=json.dumps(doc, ensure_ascii=False),
                        content_type=JSON, headers=headers)


def _translate(v2: bool, response: web.Response) -> web.Response:
    """One of the HTTP source's own answers ({"reason", "detail"}) in InfluxDB's words."""
    assert isinstance(response.body, bytes)
    doc = json.loads(response.body)
    headers = {k: v for k, v in response.headers.items() if k in ("Retry-After", "Connection")}
    if response.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="cityedge"'
    return influx_error(v2, response.status, f"{doc['reason']}: {doc['detail']}", **headers)


def credentials(request: web.Request) -> tuple[str | None, str | None]:
    """(gateway id, secret) from ``Token id:secret``, basic auth, or u/p arguments."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() == "token" and given:
        gid, sep, secret = given.partition(":")
        return (gid, secret) if sep else (None, given)
    if scheme.lower() == "basic" and given:
        try:
            user, sep, password = base64.b64decode(given, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        return (user or None, password) if sep else (None, None)
    return request.query.get("u"), request.query.get("p")


class InfluxWriteRoute:
    def __init__(self, source: HttpSource, config: InfluxWriteConfig) -> None:
        self.source = source
        self.config = config
        self.stats = InfluxWriteStats()

    async def v1(self, request: web.Request) -> web.Response:
        q = request.query
        if not q.get("db"):
            return self._bad(False, "missing_db", "database is required")
        return await self._write(request, False, q.get("precision", "n") or "n",
                                 ("n", "u", "ms", "s", "m", "h"))

    async def v2(self, request: web.Request) -> web.Response:
        q = request.query
        if not q.get("bucket") or not (q.get("org") or q.get("orgID")):
            return self._bad(True, "missing_bucket", "bucket and org (or orgID) are required")
        return await self._write(request, True, q.get("precision", "ns") or "ns",
                                 ("ns", "us", "ms", "s"))

    def _bad(self, v2: bool, reason: str, detail: str, gateway: str = "-") -> web.Response:
        self.source.intake.count(reason, f"refused line protocol from {gateway}: {reason}: "
                                 f"{detail[:300]}", time.monotonic())
        return influx_error(v2, 400, detail)

    def _who_insecure(self, gid: str | None, secret: str | None) -> str | web.Response:
        """Without a registry: the configured token as the secret, if there is one."""
        c = self.source.config
        expected = c.tokens.get(gid, c.token) if gid else c.token
        if expected is None and not c.tokens:
            return gid if gid and ID_RE.fullmatch(gid) else ANONYMOUS
        if expected is None or secret is None or not hmac.compare_digest(secret.encode(),
                                                                          expected.encode()):
            return self.source._deny(401, gid or "-", "missing or wrong token")
        return gid or ANONYMOUS

    def _who(self, request: web.Request) -> str | web.Response:
        """The writing gateway, or the source's own 401/403 answer."""
        src = self.source
        gid, secret = credentials(request)
        admission = src.intake.admission
        if admission is None:
            return self._who_insecure(gid, secret)
        if gid is None or secret is None:
            return src._deny(401, "-", "expected a token '<gateway id>:<secret>'")
        refused = src.intake.refusal(gid)
        if refused is not None:
            return src._deny(403, gid, refused.detail, refused.reason)
        if not admission.token_ok(gid, secret):
            return src._deny(401, gid, "wrong token")
        return gid

    async def _write(self, request: web.Request, v2: bool, precision: str,
                     allowed: tuple[str, ...]) -> web.Response:
        src = self.source
        src.stats.requests += 1
        if precision not in allowed:
            return self._bad(v2, "bad_precision", f"precision {precision[:20]!r}: expected one"
                             f" of {', '.join(allowed)}")
        who = self._who(request)
        if isinstance(who, web.Response):
            return _translate(v2, who)
        if src._closing:
            src.stats.busy += 1
            return _translate(v2, src._unavailable("shutting_down", "this collector is stopping"))
        early = src._over_limit(who, src._declared(request))
        if early is not None:
            return _translate(v2, early)
        # aiohttp gunzips a gzip body as it reads it, within max_body_bytes.
        body = await src._read_body(request, who)
        if isinstance(body, web.Response):
            return _translate(v2, body)
        return await self._land(v2, body, who, precision,
                                max(src._declared(request), len(body)))

    async def _land(self, v2: bool, body: bytes, gateway: str, precision: str,
                    paid: int) -> web.Response:
        src = self.source
        # Parsing line protocol costs ~3x what a JSON batch of the same bytes does: it pays
        # for that before it is parsed (the rest of what _read_body charged).
        late = src._over_limit(gateway, LINE_PROTOCOL_COST * len(body), paid)
        if late is not None:
            return _translate(v2, late)
        now_ns = time.time_ns()
        admission = src.intake.admission
        site = admission.site_for(gateway) if admission is not None else None
        # Parsing a few MiB takes a while: off the event loop, which keeps serving.
        work = (asyncio.to_thread if len(body) > THREAD_BYTES else _now)
        taken = await work(_parse_and_ingest, body, gateway, precision, now_ns, site)
        if isinstance(taken, lp.LineError):
            status = 413 if "more than" in str(taken) else 400
            src._count_refusal(gateway, "too_large" if status == 413 else "bad_body", str(taken))
            return influx_error(v2, status, str(taken))
        lines, results = taken
        accepted = self._carried(results, lines, gateway, now_ns)
        # Every batch is written before the answer; together, as one request's.
        answers = await asyncio.gather(*(src._write_then_ack(a) for a in accepted))
        written = [a for a, r in zip(accepted, answers, strict=True) if r.status == 200]
        self.stats.lines += sum(len(a.points) for a in written)
        failed = [r for r in answers if r.status != 200]
        if failed:
            return self._not_written(v2, failed[0], written, accepted)
        first = self._first_bad(accepted, lines)
        if first is None:
            self.stats.writes += 1
            return web.Response(status=204)
        self.stats.partial_writes += 1
        dead = sum(len(a.dead_letters) for a in accepted)
        return influx_error(v2, 400, f"partial write: {dead} of {lines.lines} lines not"
                            f" written (kept as dead letters); first: {first}")

    def _not_written(self, v2: bool, failed: web.Response, written: list[Accepted],
                     accepted: list[Accepted]) -> web.Response:
        """Some batch did not land: its own answer (503, Retry-After), saying how much did.
        The resend writes what landed again as the same points (the seqs are the lines'
        own), so a 503 loses nothing where a 400 would make the client drop the body."""
        if not written:
            return _translate(v2, failed)
        self.stats.partial_writes += 1
        total = sum(a.readings for a in accepted)
        done = sum(a.readings for a in written)
        doc = json.loads(failed.body) if isinstance(failed.body, bytes) else {}
        headers = {k: v for k, v in failed.headers.items() if k == "Retry-After"}
        return influx_error(v2, failed.status, f"partial write: {done} of {total} lines"
                            f" written, resend the request: {doc.get('reason', '')}:"
                            f" {doc.get('detail', '')}", **headers)

    def _carried(self, results: list[Accepted | Refused], lines: lp.Lines, gateway: str,
                 now_ns: int) -> list[Accepted]:
        """Each batch as the pipeline takes it; the lines the parser could not carry, and
        those of a batch ingest refused (a backstop: the parser makes batches ingest
        takes), as dead letters on the first."""
        dead = [dead_letter(gateway=gateway, reason=b.reason, sensor=None, measurement=None,
                            seq=b.number, epoch=lines.epoch, detail=b.detail, raw=b.text,
                            time_ns=now_ns + b.number) for b in lines.rejected]
        accepted: list[Accepted] = []
        for part, result in zip(lines.parts, results, strict=True):
            if isinstance(result, Accepted):
                accepted.append(result)
                continue
            self.source._count_refusal(gateway, result.reason, result.detail)
            dead += [dead_letter(gateway=gateway, reason=result.reason, sensor=None,
                                 measurement=None, seq=number, epoch=lines.epoch,
                                 detail=result.detail, raw=text, time_ns=now_ns + number)
                     for number, _, text in part.lines]
        if not accepted:
            numbers = [int(d.fields["seq"]) for d in dead]
            accepted.append(Accepted(gateway, (), (), Ack(gateway, lines.epoch, 0,
                                                          SeqRanges.of(numbers or [1])), False))
        head = accepted[0]
        accepted[0] = Accepted(head.gateway, head.points, head.dead_letters + tuple(dead),
                               head.ack, head.site_overridden)
        return accepted

    @staticmethod
    def _first_bad(accepted: list[Accepted], lines: lp.Lines) -> str | None:
        """'line N: reason: detail' of the lowest-numbered line not written, or None."""
        number_of: dict[int, int] = {}
        for part in lines.parts:
            for n, seq, _ in part.lines:
                number_of.setdefault(seq, n)
        parser = {b.number for b in lines.rejected}
        bad = [(number_of.get(int(p.fields["seq"]), int(p.fields["seq"])),
                f"{p.tags.get('reason', '')}: {p.fields['detail']}")
               for a in accepted for p in a.dead_letters
               if isinstance(p.fields.get("seq"), int) and p.fields["seq"] not in parser]
        bad += [(b.number, f"{b.reason}: {b.detail}: {b.text!r}") for b in lines.rejected]
        if not bad:
            return None
        number, what = min(bad)
        return f"line {number}: {what}"[:500]

    def health(self) -> dict[str, Any]:
        return {f"influx_write_{k}": v for k, v in vars(self.stats).items()}
