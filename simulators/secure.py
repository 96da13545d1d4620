"""A secure broker setup in a folder, for the tests and the demo: CA, certificates, registry.

    setup = SecureSetup.create(root)                      # CA, broker cert, a collector account
    secret = setup.add_gateway("gw-1", district="강남구", site="역삼역", kind="bus_stop")
    broker = Mosquitto(root / "mosquitto", security=setup.security()).start()
    setup.revoke("gw-1"); setup.apply(broker)             # files regenerated, broker reloaded

Everything goes through the operator's own code paths (``collector.pki``,
``collector.registry``), so what the tests trust is what a deployment runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cityedge.tls import TlsConfig
from collector import pki
from collector.registry import model
from collector.registry.mosquitto import write_files
from simulators.services import BrokerSecurity, Mosquitto

COLLECTOR = "collector-1"
NOW = "2024-05-01T09:00:00Z"


@dataclass
class SecureSetup:
    root: Path
    collector_secret: str

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def registry_path(self) -> Path:
        return self.root / "registry.yaml"

    @property
    def passwd_file(self) -> Path:
        return self.root / "mosquitto.passwd"

    @property
    def acl_file(self) -> Path:
        return self.root / "mosquitto.acl"

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    @classmethod
    def create(cls, root: Path, *, collector: str = COLLECTOR) -> SecureSetup:
        """A CA, a broker certificate for 127.0.0.1, and a registry with one collector."""
        root.mkdir(parents=True, exist_ok=True)
        pki.init_ca(root / "pki", cn="cityedge test CA")
        pki.issue(root / "pki", "broker", server=True, hosts=("127.0.0.1", "localhost"))
        reg, secret = model.add_collector(model.Registry(), collector, now=NOW)
        setup = cls(root, secret)
        setup._save(reg)
        return setup

    def registry(self) -> model.Registry:
        return model.load(self.registry_path)

    def _save(self, reg: model.Registry) -> None:
        model.save(self.registry_path, reg)
        write_files(reg, self.passwd_file, self.acl_file)

    def add_gateway(self, gateway: str, *, district: str = "강남구", site: str = "역삼역",
                    kind: str = "dust_zone") -> str:
        """Registers the gateway (broker files rewritten, not reloaded); returns its secret."""
        reg, secret = model.add_gateway(self.registry(), gateway, district=district, site=site,
                                        kind=kind, now=NOW)
        self._save(reg)
        return secret

    def rotate(self, gateway: str) -> str:
        reg, secret = model.rotate(self.registry(), gateway, now=NOW)
        self._save(reg)
        return secret

    def revoke(self, gateway: str) -> None:
        self._save(model.revoke(self.registry(), gateway, now=NOW))

    def apply(self, broker: Mosquitto) -> None:
        """The broker re-reads the password and ACL files (SIGHUP)."""
        broker.reload()

    def client_cert(self, cn: str) -> TlsConfig:
        """A client certificate for ``cn`` (a gateway id), and the CA to trust."""
        key, crt = pki.issue(self.pki_dir, cn)
        return TlsConfig(ca_file=str(self.ca_file), cert_file=str(crt), key_file=str(key))

    def tls(self) -> TlsConfig:
        """What a client needs to trust the broker (and the collector's https)."""
        return TlsConfig(ca_file=str(self.ca_file))

    def server_tls(self) -> TlsConfig:
        """The broker's certificate, also fit for the collector's https ingest on 127.0.0.1."""
        d = self.pki_dir
        return TlsConfig(cert_file=str(d / "broker.crt"), key_file=str(d / "broker.key"))

    def security(self, *, client_certs: bool = False) -> BrokerSecurity:
        d = self.pki_dir
        return BrokerSecurity(ca_file=self.ca_file, cert_file=d / "broker.crt",
                              key_file=d / "broker.key", passwd_file=self.passwd_file,
                              acl_file=self.acl_file, client_certs=client_certs)
