"""One exception family for the decoding core.

Bad bytes from a sensor are never an exception: they become ``FrameRejected`` and
``Skipped`` events, counted in ``FrameDecoder.stats``. Exceptions are left for
the two things that are our own fault:

- ``ProfileError``: a firmware profile file is wrong. Raised at load time, before
  any port is opened, with file:line, key path and what was expected.
- ``LocalProtocolError``: the caller misused the API (fed data after the end of
  the stream, fed past the buffer bound without draining events, asked the
  encoder for a value its field type cannot hold).
"""

from __future__ import annotations


class DecodingError(Exception):
    """Base class of every exception the decoding core raises."""


class ProfileError(DecodingError):
    """A firmware profile is invalid.

    Attributes:
        file: the profile's path as given to the loader.
        line: 1-based line of the offending node, or ``None`` if unknown.
        path: the key path, e.g. ``fields[2].type``; empty for the whole file.
        message: what was expected (and what was found).
    """

    def __init__(self, file: str, line: int | None, path: str, message: str) -> None:
        # One line each, whatever went into it: a log line or grep finds it whole.
        message = " ".join(message.split())
        self.file = file
        self.line = line
        self.path = path
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {path or '<top>'}: {message}")


class LocalProtocolError(DecodingError):
    """The caller used the decoder or encoder in a way the API does not allow."""
