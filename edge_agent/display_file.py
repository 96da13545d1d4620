"""The display file: what the terminal's display software reads, written so it never sees half.

Written whole (cityedge/atomic.py), so the display software and a power cut see
the old board or the new one, never half of one. ``DisplayOutput`` is the
I/O shell around the sans-IO board (edge_agent/displays.py): it feeds it the
downlink's messages, writes the file when the board changes, and answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cityedge.atomic import atomic_write, make_private
from cityedge.uplink.downlink import DisplayAck, encode_ack
from edge_agent.displays import DisplayBoard, answered, reason_of

log = logging.getLogger(__name__)


def write_display_file(path: Path, snapshot: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(snapshot, ensure_ascii=False, indent=1).encode("utf-8"))


def read_display_file(path: Path) -> dict[str, Any] | None:
    """The last board written, None if there is none; ValueError if it is not one."""
    make_private(path)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("showing"), list):
        raise ValueError(f"{path}: not a display file (no 'showing' list)")
    return doc


class DisplayOutput:
    """The board and its file (``path`` None: no display output, nothing written).

    ``now`` gives the wall time when the gateway's clock is trusted, else None.
    """

    def __init__(self, board: DisplayBoard, path: Path | None,
                 now: Callable[[], int | None]) -> None:
        self.board = board
        self.path = path
        self._now = now
        self.write_failures = 0
        self._stale = False
        self._lock = asyncio.Lock()

    async def on_message(self, payload: bytes) -> bytes | None:
        """Apply a display message; the ack to publish, or None for one that failed the seal
        check (counted by the board, logged once per reason)."""
        try:
            changed, ack = self.board.receive(payload, self._now())
        except Exception as exc:  # a bug, not the peer's fault: the board promises not to raise
            log.exception("display message %.200r", payload)
            return encode_ack(DisplayAck("", self.board.gateway, "rejected",
                                         f"internal_error: {type(exc).__name__}"))
        if (changed or self._stale) and not await self.write():
            self.board.forget(ack.id)
            self.board.rejected["display_output"] += 1
            ack = DisplayAck(ack.id, ack.gateway, "rejected", "display_output: write failed")
        if ack.result != "rejected":
            log.info("display %s %s; showing %d", ack.id, ack.result, len(self.board.showing))
        elif self.board.rejected[reason_of(ack)] <= 1:  # a flood must not fill the log
            log.warning("display %s rejected (more of this kind are counted, not logged): %s",
                        ack.id or "?", ack.detail)
        return encode_ack(ack) if answered(ack) else None

    async def write(self) -> bool:
        """Write the board as it is now. Until a write succeeds the file is stale, and
        every display message and health tick tries again (a failed clear must not
        leave a warning up because the board already forgot it)."""
        if self.path is None:
            return True
        async with self._lock:  # the ack task and the health loop both write
            snapshot = self.board.snapshot(time.time_ns())
            try:
                await asyncio.to_thread(write_display_file, self.path, snapshot)
            except (OSError, ValueError) as exc:
                self.write_failures += 1
                self._stale = True
                log.error("cannot write the display file %s: %s", self.path, exc)
                return False
            self._stale = False
            return True

    async def tick(self) -> None:
        """Every health interval: take down what expired; rewrite a stale file."""
        now = self._now()
        if (now is not None and self.board.expire(now)) or self._stale:
            await self.write()

    def restore(self) -> None:
        """Put back the board a previous run wrote (displays.py ``restore``)."""
        if self.path is None:
            return
        try:
            snapshot = read_display_file(self.path)
            if snapshot is not None:
                self.board.restore(snapshot)
                log.info("restored %d display(s) from %s", len(self.board.showing), self.path)
        except (OSError, ValueError) as exc:  # DownlinkError is a ValueError
            log.error("display file %s unreadable, starting with a blank board: %s",
                      self.path, exc)
            self._stale = True  # rewrite it blank: the terminal must not show it

    def health_fields(self) -> dict[str, int | float | bool | str]:
        rejected = self.board.rejected
        return {
            "displays_showing": len(self.board.showing),
            "displays_rejected": self.board.counts["rejected"],
            **{f"displays_rejected_{r}": n for r, n in sorted(rejected.items()) if n},
            "display_write_failures": self.write_failures,
        }
