"""The HTTP source's route for sensor.community (airrohr) devices: their push, unchanged.

``POST {path_prefix}{airrohr.path}`` (default ``/v1/airrohr``) takes what the
firmware's "send to own API" sends (collector/sources/airrohr.py). In order:

- ``X-Sensor`` names the device (``esp8266-<chipid>`` / ``esp32-<chipid>``); that
  string is its id in the gateway registry. Missing or malformed: 400 ``no_sensor_id``.
- With a registry: a device it does not list is refused (403 ``unknown_gateway``,
  counted), unless ``auto_register`` is set, which admits it under that site
  (counted as ``airrohr_auto_admitted``). A revoked one: 403 ``revoked_gateway``.
  A listed device proves itself with HTTP basic auth, the registry secret as the
  password (the firmware's "user"/"password" of the custom API; the user name is
  not checked): 401 otherwise. ``require_password: false`` admits a listed device
  by its chip id alone (which anyone on the network can read off its Wi-Fi name).
- Without a registry (``insecure: true``): ``http.token``/``tokens`` as the
  basic-auth password when set, else every device.
- Then the rate limit (429), the body, the mapping, the collector's own ingest
  (validation, the registry's site tags), and the write pipeline, like a batch.

The answer comes only after the write: 200 once InfluxDB accepted the readings,
503 with Retry-After if not. The firmware never resends: a push that gets a 503
is lost on the device's side, and one whose write landed after its 503 is
stored. Each reading is stored at most once (docs/integrations.md).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cityedge.uplink.payload import tag_value_ok
from collector.deadletter import dead_letter
from collector.ingest import Accepted, Refused, ingest
from collector.ratelimit import RateLimiter
from collector.registry.model import SITE_KINDS
from collector.sources import airrohr

if TYPE_CHECKING:
    from collector.sources.http import HttpSource

JSON = "application/json"


Admitted = tuple[str, dict[str, str] | None]  # the device's id, its site tags


@dataclass(frozen=True)
class AutoRegister:
    """Where devices the registry does not list stand, when they are admitted anyway."""

    district: str
    site: str
    kind: str

    def __post_init__(self) -> None:
        for key, value in (("district", self.district), ("site", self.site)):
            if not tag_value_ok(value):
                raise ValueError(f"{key} {value!r}: expected a non-empty name without a"
                                 " newline or a trailing backslash, at most 256 characters")
        if self.kind not in SITE_KINDS:
            raise ValueError(f"kind {self.kind!r}: expected one of {', '.join(SITE_KINDS)}")


@dataclass(frozen=True)
class AirrohrConfig:
    path: str = "/v1/airrohr"
    # A registered device must send its registry secret as the basic-auth password.
    require_password: bool = True
    # null: devices the registry does not list are refused (unknown_gateway).
    auto_register: AutoRegister | None = None
    # Devices auto_register admits at most (past it: 403 auto_register_full), and their
    # pushes a second all together (429 rate_limited): an unlisted id costs no password,
    # so per-id limits do not bound them. 145 s between pushes: 1,000 devices ~7/s.
    max_auto_admitted: int = 1000
    auto_rate: float = 20.0
    auto_burst: int = 100

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or "{" in self.path or "}" in self.path:
            raise ValueError(f"airrohr.path: expected '/name', got {self.path!r}")
        if self.max_auto_admitted < 1 or self.auto_rate <= 0 or self.auto_burst < 1:
            raise ValueError("airrohr: max_auto_admitted >= 1, auto_rate > 0, auto_burst >= 1")


@dataclass
class AirrohrStats:
    pushes: int = 0  # answered 200
    readings: int = 0  # in those pushes (one per sensor)
    metadata_values: int = 0  # samples, min_micro, ... (not stored)
    auto_admitted: int = 0  # pushes from devices the registry does not list
    auto_devices: int = 0  # distinct devices auto_register admitted (at most the cap)


# Pushes answered 429/503 (the firmware never resends: each is lost), by reason.
LOST_STATUSES = (429, 503)
AUTO_KEY = "auto_register"


def reply(status: int, reason: str, detail: str, **headers: str) -> web.Response:
    body = json.dumps({"reason": reason, "detail": detail}, ensure_ascii=False)
    return web.Response(status=status, text=body, content_type=JSON, headers=headers)


def _basic_password(request: web.Request) -> str | None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not given:
        return None
    try:
        decoded = base64.b64decode(given.strip(), validate=True).decode()
        _user, sep, password = decoded.partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return password if sep else None


class AirrohrRoute:
    def __init__(self, source: HttpSource, config: AirrohrConfig) -> None:
        self.source = source
        self.config = config
        self.stats = AirrohrStats()
        self.lost: Counter[str] = Counter()
        self._auto: set[str] = set()  # bounded by max_auto_admitted
        self._auto_limit = RateLimiter(config.auto_rate, config.auto_burst, 1)

    def _deny(self, status: int, gateway: str, detail: str, reason: str) -> web.Response:
        self.source.intake.count(reason, f"refused airrohr push from {gateway}: {reason}: "
                                 f"{detail[:300]}", time.monotonic())
        headers = {"WWW-Authenticate": 'Basic realm="cityedge"'} if status == 401 else {}
        return reply(status, reason, detail, **headers)

    def _insecure(self, request: web.Request, gateway: str) -> web.Response | None:
        """Without a registry: the configured token as the password, if there is one."""
        c = self.source.config
        expected = c.tokens.get(gateway, c.token)
        if expected is None and not c.tokens:
            return None
        given = _basic_password(request)
        if expected is None or given is None or not hmac.compare_digest(given.encode(),
                                                                         expected.encode()):
            return self._deny(401, gateway, "missing or wrong password", "unauthorized")
        return None

    def _site(self, request: web.Request, gateway: str) -> dict[str, str] | web.Response | None:
        """The site tags to use (None: no registry, the payload's none), or the refusal."""
        admission, c = self.source.intake.admission, self.config
        if admission is None:
            return self._insecure(request, gateway)
        refused = admission.refusal(gateway)
        if refused is not None and refused.reason == "unknown_gateway" and c.auto_register:
            early = self._auto_admit(gateway)
            if early is not None:
                return early
            self.stats.auto_admitted += 1
            a = c.auto_register
            return {"district": a.district, "site": a.site, "site_kind": a.kind}
        if refused is not None:
            return self._deny(403, gateway, refused.detail, refused.reason)
        given = _basic_password(request) if c.require_password else None
        if c.require_password and (given is None or not admission.token_ok(gateway, given)):
            return self._deny(401, gateway, "missing or wrong password", "unauthorized")
        return admission.site_for(gateway)

    def _auto_admit(self, gateway: str) -> web.Response | None:
        """Room for one more unlisted device, and its push within the shared rate."""
        c = self.config
        if gateway not in self._auto and len(self._auto) >= c.max_auto_admitted:
            return self._deny(403, gateway, f"{c.max_auto_admitted} unlisted devices admitted"
                              " already: add it to the registry", "auto_register_full")
        wait = self._auto_limit.take(AUTO_KEY, time.monotonic())
        if wait:
            self.source.stats.rate_limited += 1
            self.source._count_refusal(gateway, "rate_limited", "unlisted devices over"
                                       f" {c.auto_rate:g} pushes/s together")
            return reply(429, "rate_limited", f"unlisted devices over {c.auto_rate:g}"
                         " pushes/s", **{"Retry-After": str(math.ceil(wait))})
        if gateway not in self._auto:
            self._auto.add(gateway)
            self.stats.auto_devices = len(self._auto)
        return None

    async def _admit(self, request: web.Request) -> Admitted | web.Response:
        """Who sends (and where it stands), or why not: identity, closing, rate."""
        src = self.source
        gateway = airrohr.gateway_of(request.headers.get("X-Sensor"))
        if gateway is None:
            return self._deny(400, "-", "X-Sensor: expected esp8266-<chipid> or esp32-<chipid>",
                              "no_sensor_id")
        site = self._site(request, gateway)
        if isinstance(site, web.Response):
            return site
        if src._closing:
            src.stats.busy += 1
            return src._unavailable("shutting_down", "this collector is stopping")
        early = src._over_limit(gateway, src._declared(request))
        return early if early is not None else (gateway, site)

    def _accepted(self, body: bytes, gateway: str,
                  site: dict[str, str] | None) -> tuple[Accepted, int] | web.Response:
        """The push as the pipeline takes it (and its metadata count), or the 400."""
        try:
            push = airrohr.to_batch(body, gateway, time.time_ns())
        except airrohr.AirrohrError as exc:
            return self.source._refuse(gateway, exc.reason, exc.detail)
        result = ingest(push.payload, gateway, site, "airrohr")
        if isinstance(result, Refused):  # the mapping makes batches ingest takes: a backstop
            return self.source._refuse(gateway, result.reason, result.detail)
        detail = f"airrohr {push.software_version}".strip()
        dead = tuple(dead_letter(gateway=gateway, reason=r.reason, sensor=r.sensor,
                                 measurement=r.measurement, seq=r.seq, epoch=push.epoch,
                                 detail=detail, raw=r.raw, time_ns=r.seq)
                     for r in push.rejected)
        return dataclasses.replace(result, dead_letters=result.dead_letters + dead), push.metadata

    async def handle(self, request: web.Request) -> web.Response:
        response = await self._handle(request)
        if response.status in LOST_STATUSES:
            doc = json.loads(response.body) if isinstance(response.body, bytes) else {}
            self.lost[str(doc.get("reason", response.status))] += 1
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        src = self.source
        src.stats.requests += 1
        admitted = await self._admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        gateway, site = admitted
        body = await src._read_body(request, gateway)
        if isinstance(body, web.Response):
            return body
        taken = self._accepted(body, gateway, site)
        if isinstance(taken, web.Response):
            return taken
        accepted, metadata = taken
        response = await src._write_then_ack(accepted)
        if response.status == 200:
            self.stats.pushes += 1
            self.stats.readings += len(accepted.points)
            self.stats.metadata_values += metadata
        return response

    def health(self) -> dict[str, Any]:
        lost = {f"airrohr_lost_{k}": v for k, v in sorted(self.lost.items())}
        return {**{f"airrohr_{k}": v for k, v in vars(self.stats).items()},
                "airrohr_lost": sum(self.lost.values()), **lost}

