"""The collector as ``edge-collector run`` starts it, with a keyring of seal keys (tests only).

In production the keyring comes from the operator's gateway registry; the
suite has none, so this starts the real CollectorService through its
constructor seam with a fixed keyring built from ``--secrets`` (a YAML map
of gateway id -> secret, the gateway's ``gateway.secret``).

    python -m tests.seal_collector --config collector.yaml --secrets secrets.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import yaml

from cityedge.uplink.seal import StaticKeyRing
from collector.config import load_config
from collector.service import CollectorService


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="seal_collector", description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--secrets", required=True)
    args = p.parse_args(argv)
    with open(args.secrets, encoding="utf-8") as f:
        secrets = yaml.safe_load(f)
    keyring = StaticKeyRing.from_secrets({str(k): str(v) for k, v in secrets.items()})
    loaded = load_config(args.config)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        service = CollectorService(loaded, keyring=keyring)
        service.install_signal_handlers()
        await service.serve()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
