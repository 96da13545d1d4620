"""Mosquitto's ``password_file`` and ``acl_file``, generated from the registry.

Only active clients appear: a revoked gateway is in neither file, so after the
files are rewritten and the broker reloads them (SIGHUP), it can neither log in
nor, if it is still connected, publish or receive anything. What Mosquitto
2.0.11 does on SIGHUP (src/security_default.c, ``mosquitto_security_apply_default``):
it re-reads both files, disconnects connected clients whose password no longer
checks, and re-applies the ACL to the others (clients logged in by certificate
keep their connection, under the new ACL).

The text is built sans-IO (``passwd_text``, ``acl_text``); ``write_files`` and
``reload`` are the I/O.
"""

from __future__ import annotations

import os
import pwd
import signal
from pathlib import Path

from cityedge.atomic import atomic_write
from cityedge.uplink.topics import Grants, Topics
from collector.registry.model import Registry

PASSWD_MODE = 0o600  # hashes only, still nobody else's business
ACL_MODE = 0o644


class ReloadError(RuntimeError):
    """The broker could not be told to reload (no pid file, or no such process)."""


def passwd_text(reg: Registry) -> str:
    lines = ["# Generated from the cityedge registry; edits here are overwritten."]
    lines += [f"{g.id}:{g.password_hash}" for g in reg.active()]
    lines += [f"{c.name}:{c.password_hash}" for _, c in sorted(reg.collectors.items())]
    return "\n".join(lines) + "\n"


def _grant_lines(grants: Grants) -> list[str]:
    return ([f"topic write {t}" for t in grants.write]
            + [f"topic read {t}" for t in grants.read]
            + [f"topic readwrite {t}" for t in grants.readwrite])


def acl_text(reg: Registry) -> str:
    """One ``user`` block per client; a user not listed may do nothing at all."""
    topics = Topics(reg.topic_prefix)
    blocks = ["# Generated from the cityedge registry; edits here are overwritten.\n"
              "# Users without a block below (and anonymous clients) get no access."]
    for g in reg.active():
        blocks.append("\n".join([f"user {g.id}", *_grant_lines(topics.gateway_grants(g.id))]))
    collector = _grant_lines(topics.collector_grants())
    for name in sorted(reg.collectors):
        blocks.append("\n".join([f"user {name}", *collector]))
    return "\n\n".join(blocks) + "\n"


def write_files(reg: Registry, passwd: Path, acl: Path, *, owner: str | None = None) -> None:
    """Both files, each replaced atomically (the broker never reads half of one).

    ``owner``: the user the broker runs as (Debian's ``mosquitto``), which reads
    the files after dropping root; without it they belong to whoever runs this.
    """
    atomic_write(passwd, passwd_text(reg).encode("utf-8"), mode=PASSWD_MODE)
    atomic_write(acl, acl_text(reg).encode("utf-8"), mode=ACL_MODE)
    if owner is not None:
        entry = pwd.getpwnam(owner)
        for path in (passwd, acl):
            os.chown(path, entry.pw_uid, entry.pw_gid)


def reload(pidfile: Path) -> int:
    """SIGHUP to the broker whose pid is in ``pidfile``: it re-reads both files. Returns the pid."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise ReloadError(f"{pidfile}: no broker pid in it ({exc})") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise ReloadError(f"broker pid {pid} (from {pidfile}): {exc.strerror}") from None
    return pid
