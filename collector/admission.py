"""Who may send, checked once for both sources (MQTT and HTTP): the registry at ingest.

With a registry, a batch is taken only from a gateway the registry lists and
has not revoked (``unknown_gateway``, ``revoked_gateway`` otherwise; the source
counts the refusal and, on MQTT, PUBACKs it: nothing in it can ever be
written). The registry is authoritative for where a gateway stands: every
point gets the registry's district, site and site kind, whatever the payload
said, and a payload that disagreed is counted (``site_overrides``).

The HTTP source also checks the bearer token against the gateway's password
hash; a token that verified is remembered (by its SHA-256, per gateway, until
the registry changes) so PBKDF2 runs once per gateway, not once per batch.

Sans-IO: the registry comes in (``LiveRegistry.current``), results go out.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from collector.ingest import SITE_TAGS, Accepted, Refused, ingest
from collector.registry.live import LiveRegistry
from collector.registry.model import Registry
from collector.registry.passwords import verify_password


@dataclass
class AdmissionStats:
    site_overrides: int = 0  # batches whose payload site disagreed with the registry


class Admission:
    def __init__(self, live: LiveRegistry) -> None:
        self.live = live
        self.stats = AdmissionStats()
        self._verified: dict[str, bytes] = {}  # gateway -> sha256 of the token that verified
        self._verified_for: Registry | None = None

    @property
    def registry(self) -> Registry:
        return self.live.current

    def refusal(self, gateway: str | None) -> Refused | None:
        """Why a batch from ``gateway`` (the topic's or the URL's) is refused, or None."""
        g = self.registry.gateways.get(gateway) if gateway is not None else None
        if g is None:
            return Refused(gateway, "unknown_gateway", f"{gateway!r} is not in the registry")
        if g.revoked:
            return Refused(gateway, "revoked_gateway", f"{gateway!r} was revoked {g.rotated}")
        return None

    def site_for(self, gateway: str) -> dict[str, str]:
        """The registry's site tags for a gateway it lists, by tag name (ingest.SITE_TAGS)."""
        g = self.registry.gateways[gateway]
        return {tag: g.site_tags[key] for key, tag in SITE_TAGS.items()}

    def key_for(self, gateway: str) -> bytes | None:
        """The gateway's seal key (a KeyRing, cityedge/uplink/seal.py): None once revoked."""
        return self.registry.key_for(gateway)

    def token_ok(self, gateway: str, token: str) -> bool:
        """The bearer token is this gateway's secret (call after ``refusal`` said None)."""
        if self._verified_for is not self.registry:
            self._verified, self._verified_for = {}, self.registry
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(gateway)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        g = self.registry.gateways.get(gateway)
        if g is None or not verify_password(token, g.password_hash):
            return False
        self._verified[gateway] = digest  # bounded by the registry's gateways
        return True


def ingest_checked(payload: bytes, gateway: str | None,
                   admission: Admission | None) -> Accepted | Refused:
    """``ingest``, with the registry's checks when there is one (``insecure: true`` has none)."""
    if admission is None:
        return ingest(payload, gateway)
    refused = admission.refusal(gateway)
    if refused is not None:
        return refused
    assert gateway is not None  # refusal() refuses a batch that names no gateway
    result = ingest(payload, gateway, admission.site_for(gateway))
    if isinstance(result, Accepted) and result.site_overridden:
        admission.stats.site_overrides += 1
    return result
