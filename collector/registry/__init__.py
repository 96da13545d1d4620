"""The gateway registry: identities, site tags and keys, and the broker files made from them.

``model`` holds the data and its YAML file, ``passwords`` the secrets and
Mosquitto's hashes, ``mosquitto`` the generated password and ACL files,
``live`` the collector's view that follows the file, ``cli`` the operator's
``edge-collector gateways`` command.
"""

from collector.registry.model import (
    CollectorAccount,
    Gateway,
    Registry,
    RegistryError,
    load,
    save,
)
from collector.registry.passwords import hash_password, new_secret, verify_password

__all__ = [
    "CollectorAccount",
    "Gateway",
    "Registry",
    "RegistryError",
    "hash_password",
    "load",
    "new_secret",
    "save",
    "verify_password",
]
