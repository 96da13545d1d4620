"""The agent's and the collector's signals (cityedge/lifecycle.py), with real signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from cityedge.lifecycle import ExitSignals


async def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    await asyncio.sleep(0.05)  # the loop runs the handler on its next turn


def test_first_sigterm_asks_to_finish_and_the_second_exits_at_once() -> None:
    async def main() -> None:
        signals = ExitSignals(stopping="finishing", forced="left as is")
        signals.install()
        try:
            await _deliver(signal.SIGTERM)
            assert signals.should_exit.is_set()
            with pytest.raises(SystemExit):
                signals.handle_exit(signal.SIGTERM)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                asyncio.get_running_loop().remove_signal_handler(sig)

    asyncio.run(main())


def test_sighup_reloads_or_is_logged_never_ends_the_process(
        caplog: pytest.LogCaptureFixture) -> None:
    reloads: list[int] = []

    async def main() -> None:
        quiet = ExitSignals(stopping="s", forced="f")
        quiet.install()
        await _deliver(signal.SIGHUP)
        assert not quiet.should_exit.is_set()
        reloading = ExitSignals(stopping="s", forced="f", reload=lambda: reloads.append(1))
        reloading.install()
        await _deliver(signal.SIGHUP)
        assert not reloading.should_exit.is_set()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            asyncio.get_running_loop().remove_signal_handler(sig)

    with caplog.at_level(logging.INFO, logger="cityedge.lifecycle"):
        asyncio.run(main())
    assert reloads == [1]
    assert "SIGHUP: nothing to reload here" in caplog.text
