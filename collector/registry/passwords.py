"""Secrets and Mosquitto's own password hashes, sans-IO apart from the random source.

A gateway's secret is 32 random bytes in URL-safe base64 (43 characters). It is
the gateway's MQTT password and HTTP bearer token, and its seal key is derived
from it (``cityedge.uplink.seal.derive_key``). The registry keeps only the
hash, in the format Mosquitto 2.0 reads from its ``password_file``::

    $7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>

which is what ``mosquitto_passwd`` 2.0.11 writes by default: 101 iterations,
a 12-byte salt, a 64-byte digest, standard base64 with padding (checked
against that tool's output and against a real broker in the tests). Mosquitto
reads the iteration count from each hash, so the count could be raised, but
the secrets are 256 random bits: no dictionary attack applies, and a larger
count would only slow every broker connect and HTTP check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_BYTES = 32
# mosquitto_passwd 2.0.11 (src/password_mosq.c): PW_DEFAULT_ITERATIONS, SALT_LEN.
ITERATIONS = 101
SALT_BYTES = 12
DIGEST_BYTES = 64  # SHA-512
# Bounds on what we accept from a file: a hand-edited count of a billion would
# stall every check; Mosquitto itself accepts any positive count.
MAX_ITERATIONS = 1_000_000
PBKDF2_TAG = "7"  # $7$: PBKDF2-HMAC-SHA512
SHA512_TAG = "6"  # $6$: one round of SHA-512 over password+salt (Mosquitto 1.x)


class HashError(ValueError):
    """A stored hash is not one Mosquitto 2.0 can read."""


def new_secret() -> str:
    """A fresh gateway or collector secret: 32 random bytes, URL-safe base64, no padding."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_password(password: str, *, salt: bytes | None = None,
                  iterations: int = ITERATIONS) -> str:
    """Mosquitto's ``$7$`` hash of ``password``; a random salt unless one is given (tests)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"${PBKDF2_TAG}${iterations}${_b64(salt)}${_b64(digest)}"


def parse_hash(encoded: str) -> tuple[str, int, bytes, bytes]:
    """(tag, iterations, salt, digest) of a ``$7$`` or ``$6$`` hash, or HashError."""
    parts = encoded.split("$")
    try:
        if len(parts) == 5 and parts[0] == "" and parts[1] == PBKDF2_TAG:
            iterations = int(parts[2])
            salt, digest = _unb64(parts[3]), _unb64(parts[4])
        elif len(parts) == 4 and parts[0] == "" and parts[1] == SHA512_TAG:
            iterations, salt, digest = 1, _unb64(parts[2]), _unb64(parts[3])
        else:
            raise HashError("expected $7$<iterations>$<salt>$<hash> (or $6$<salt>$<hash>)")
    except (ValueError, binascii.Error) as exc:
        if isinstance(exc, HashError):
            raise
        raise HashError(f"not a Mosquitto hash: {exc}") from None
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise HashError(f"iterations {iterations}: expected 1..{MAX_ITERATIONS}")
    if not salt or len(digest) != DIGEST_BYTES:
        raise HashError(f"expected a salt and a {DIGEST_BYTES}-byte SHA-512 digest")
    return parts[1], iterations, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches the stored hash (compared in constant time)."""
    try:
        tag, iterations, salt, digest = parse_hash(encoded)
    except HashError:
        return False
    if tag == PBKDF2_TAG:
        given = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    else:
        given = hashlib.sha512(password.encode() + salt).digest()
    return hmac.compare_digest(given, digest)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
