"""``edge-agent doctor`` on an HTTP uplink: the token is accepted and the collector acks.

It POSTs what the agent posts to ask the collector's clock: a batch of no
readings, under this gateway's id and token, to ``{url}/v1/gateways/{id}/batches``.
The collector answers it the way it answers every batch, with an ack; with
``gateway.secret`` set the ack must carry the collector's seal for this gateway
(cityedge/uplink/seal.py), as the agent requires. The batch names an outbox
epoch of its own, so nothing of the running agent's outbox is touched, and
nothing is written to InfluxDB (so a collector whose InfluxDB is down still acks
it: the running agent's own acks, or ``edge-agent status``, tell that apart). The
answer is read with the agent's own ``classify`` (transports/http.py), so doctor
and agent agree on what it means.
"""

from __future__ import annotations

import secrets
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

from cityedge.tls import client_context
from cityedge.uplink import Batch, encode_batch
from cityedge.uplink.seal import derive_key
from edge_agent.clock import Clock
from edge_agent.config import AgentConfig, effective_uplink
from edge_agent.transports.http import Delivered, HttpTransport, Refused, classify

# Seconds for the probe's round trip.
PROBE_TIMEOUT_S = 10.0
AREA = "uplink"
SECRET_FIX = ("gateway.secret (or uplink.http.token) must be the one edge-collector gateways"
              " add printed for this gateway (edge-collector gateways rotate issues a new one)")


def probe_batch(config: AgentConfig) -> bytes:
    site = config.gateway.site
    clock = Clock(config.clock_synced)
    return encode_batch(Batch(
        gateway=config.gateway.id, epoch=secrets.token_hex(8),
        batch_id=secrets.randbelow(1 << 30), sent_ns=time.time_ns(),
        clock_synced=clock.synced(), boot=clock.boot, mono_ns=time.monotonic_ns(),
        site={"district": site.district, "site": site.site, "kind": site.kind},
        sensors={}, readings=()))


def check_ack(config: AgentConfig, base: Path) -> tuple[str, str, str]:  # noqa: PLR0911  one return per kind of answer
    """(verdict, text, fix) for the probe's answer; verdict "ok" or "FAIL"."""
    u = effective_uplink(config, base).http
    endpoint = HttpTransport(u, config.gateway.id, max_in_flight=1).endpoint
    headers = {"Content-Type": "application/json"}
    if u.token is not None:
        headers["Authorization"] = f"Bearer {u.token}"
    context = None
    if u.url.startswith("https://"):
        context = client_context(u.tls) if u.tls is not None else ssl.create_default_context()
    key = None if config.gateway.secret is None else derive_key(config.gateway.secret)
    request = urllib.request.Request(endpoint, data=probe_batch(config), headers=headers,
                                     method="POST")
    who = f"as {config.gateway.id}" + ("" if u.token else " without a token")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S, context=context) as resp:
            status, answer, body = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        status, answer, body = exc.code, dict(exc.headers), exc.read()
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        return ("FAIL", f"HTTP POST {endpoint}: no answer ({why})",
                "is the collector running (systemctl status cityedge-collector), and"
                " uplink.http.url its address?")
    took_ms = (time.monotonic() - started) * 1000
    outcome = classify(status, answer, body, key)
    if isinstance(outcome, Delivered):
        sealed = " (sealed with this gateway's key)" if key is not None else " (unsealed)"
        return ("ok", f"HTTP {who}: the collector acked a probe batch in {took_ms:.0f} ms"
                f"{sealed}", "")
    if isinstance(outcome, Refused) and outcome.status in (401, 403):
        return ("FAIL", f"HTTP {who}: credentials refused ({outcome.status}"
                f" {outcome.reason}: {outcome.detail})", SECRET_FIX)
    if isinstance(outcome, Refused) and outcome.reason == "bad_ack":
        return ("FAIL", f"HTTP {who}: the collector answered {status} but with no ack this"
                f" gateway can verify ({outcome.detail})",
                "the collector's registry must hold this gateway's secret: gateway.secret"
                " and the registry's entry disagree (edge-collector gateways show "
                f"{config.gateway.id})")
    if isinstance(outcome, Refused) and outcome.status == 404:
        return ("FAIL", f"HTTP POST {endpoint}: not found (404): no collector at this path",
                "uplink.http.url is the collector's base URL, with its path prefix if any")
    if isinstance(outcome, Refused):
        return ("FAIL", f"HTTP {who}: the collector refused the probe ({outcome.status}"
                f" {outcome.reason}: {outcome.detail})", "journalctl -u cityedge-collector")
    return ("FAIL", f"HTTP {who}: no ack: {outcome.why}", "the collector cannot write now"
            " (is InfluxDB reachable from it? journalctl -u cityedge-collector); readings wait"
            " in the outbox meanwhile")
