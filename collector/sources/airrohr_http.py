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
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cityedge.uplink.payload import tag_value_ok
from collector.deadletter import dead_letter
from collector.ingest import Accepted, Refused, ingest
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

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or "{" in self.path or "}" in self.path:
            raise ValueError(f"airrohr.path: expected '/name', got {self.path!r}")


@dataclass
class AirrohrStats:
    pushes: int = 0  # answered 200
    readings: int = 0  # in those pushes (one per sensor)
    metadata_values: int = 0  # samples, min_micro, ... (not stored)
    auto_admitted: int = 0  # pushes from devices the registry does not list


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
            self.stats.auto_admitted += 1
            a = c.auto_register
            return {"district": a.district, "site": a.site, "site_kind": a.kind}
        if refused is not None:
            return self._deny(403, gateway, refused.detail, refused.reason)
        given = _basic_password(request) if c.require_password else None
        if c.require_password and (given is None or not admission.token_ok(gateway, given)):
            return self._deny(401, gateway, "missing or wrong password", "unauthorized")
        return admission.site_for(gateway)

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
        return {f"airrohr_{k}": v for k, v in vars(self.stats).items()}

