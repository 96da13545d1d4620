"""TLS settings shared by every link that leaves the host (MQTT, HTTP uplink, HTTP ingest).

One config shape, ``tls: {ca_file, cert_file, key_file}``, and the contexts made
from it. Certificates are always verified, with hostname checks: there is no
option to turn verification off. TLS 1.2 is the oldest version offered.
"""

from __future__ import annotations

import dataclasses
import ssl
from dataclasses import dataclass
from pathlib import Path

MIN_VERSION = ssl.TLSVersion.TLSv1_2


@dataclass(frozen=True)
class TlsConfig:
    # The CA that signed the server's (or, on a server, the clients') certificate;
    # null: the system's trusted CAs.
    ca_file: str | None = None
    # This side's own certificate and key: a client certificate for MQTT (the
    # broker's require_certificate), or the server's for HTTP ingest.
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file: cert_file and key_file go together")

    def resolved(self, base: Path) -> TlsConfig:
        """The same settings with relative paths taken from ``base`` (the config's folder)."""
        def fix(value: str | None) -> str | None:
            if value is None:
                return None
            p = Path(value).expanduser()
            return str(p if p.is_absolute() else base / p)

        return dataclasses.replace(self, ca_file=fix(self.ca_file), cert_file=fix(self.cert_file),
                                   key_file=fix(self.key_file))


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """Verifies the server against ``ca_file`` (or the system CAs), hostname included."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    ctx.minimum_version = MIN_VERSION
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if tls.cert_file is not None:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """Serves ``cert_file``/``key_file``; with ``ca_file``, clients must present a
    certificate that CA signed."""
    if tls.cert_file is None:
        raise ValueError("cert_file: a server needs its certificate and key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = MIN_VERSION
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.ca_file is not None:
        ctx.load_verify_locations(tls.ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
