"""Mosquitto's $7$ hashes: ours match mosquitto_passwd's, both ways, byte for byte."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from collector.registry.passwords import (
    DIGEST_BYTES,
    ITERATIONS,
    SALT_BYTES,
    HashError,
    hash_password,
    new_secret,
    parse_hash,
    verify_password,
)
from tests.conftest import _need

# Written by mosquitto_passwd 2.0.11 for user gw-1, password "hello" (-b -c).
MOSQUITTO_2_0_11 = ("$7$101$Ufj+3crFI1oGbn1V$TTOY84z+c0A3kV7D7PbQa9P1/Fb6fzNLVzc11sQs+zWZoA/"
                    "I0g5e8j3knuhnZr3bxKkS6Pqvs4LSPuXbWy/mcg==")


def test_the_format_is_mosquitto_passwds_default() -> None:
    tag, iterations, salt, digest = parse_hash(hash_password("hello"))
    assert (tag, iterations, len(salt), len(digest)) == ("7", ITERATIONS, SALT_BYTES,
                                                         DIGEST_BYTES)
    assert parse_hash(MOSQUITTO_2_0_11)[:2] == ("7", 101)


def test_a_known_salt_gives_mosquittos_own_hash() -> None:
    salt = base64.b64decode(MOSQUITTO_2_0_11.split("$")[3])
    assert hash_password("hello", salt=salt) == MOSQUITTO_2_0_11


def test_verify_against_a_hash_mosquitto_wrote() -> None:
    assert verify_password("hello", MOSQUITTO_2_0_11)
    assert not verify_password("hello!", MOSQUITTO_2_0_11)
    assert not verify_password("", MOSQUITTO_2_0_11)


def test_sha512_hashes_of_mosquitto_1_x_verify() -> None:
    salt = b"0123456789ab"
    digest = hashlib.sha512(b"pw" + salt).digest()
    old = f"$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password("pw", old)
    assert not verify_password("pX", old)


@pytest.mark.parametrize("bad", [
    "", "plain", "$7$101$salt", "$7$x$c2FsdA==$aGFzaA==", "$7$0$c2FsdA==$" + "A" * 88,
    "$7$101$!!!$" + "A" * 88, "$7$101$c2FsdA==$aGFzaA==", "$5$c2FsdA==$aGFzaA==",
    "$7$9999999$c2FsdA==$" + "A" * 86 + "==",
])
def test_malformed_hashes_are_errors_and_never_verify(bad: str) -> None:
    with pytest.raises(HashError):
        parse_hash(bad)
    assert not verify_password("anything", bad)


def test_secrets_are_32_random_bytes_urlsafe() -> None:
    a, b = new_secret(), new_secret()
    assert a != b
    assert len(base64.urlsafe_b64decode(a + "=")) == 32
    assert set(a) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_mosquitto_passwd_checks_our_hash_and_we_check_its(tmp_path: Path) -> None:
    """The installed tool agrees with us: its file verifies here; ours is what it would
    write with the same salt (the broker-side check is in the integration tests)."""
    _need("mosquitto_passwd", "mosquitto")
    binary = shutil.which("mosquitto_passwd")
    assert binary is not None
    secret = new_secret()
    pw = tmp_path / "pw"
    subprocess.run([binary, "-b", "-c", str(pw), "gw-1", secret], check=True, timeout=30)
    user, encoded = pw.read_text().strip().split(":", 1)
    assert user == "gw-1"
    assert verify_password(secret, encoded)
    salt = parse_hash(encoded)[2]
    assert hash_password(secret, salt=salt) == encoded
