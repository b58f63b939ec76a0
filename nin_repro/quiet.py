"""Drop the noise that library threads print to stderr after a failure we report in one line.

When a checkpoint write fails (full disk), tensorstore's C++ threads print a traceback ending in
``RuntimeError: Event loop is closed`` for each pending callback of orbax's closed event loop,
straight through ``sys.stderr`` (no logging, no ``sys.excepthook``). :class:`FilteredStderr`
holds back any text from "Traceback (most recent call last):" up to its exception line and drops
it if that line is one of ``DROP``; everything else passes through unchanged.
"""

from __future__ import annotations

import threading

DROP = ("RuntimeError: Event loop is closed",)
_START = "Traceback (most recent call last):"


class FilteredStderr:
    def __init__(self, stream):
        self._stream = stream
        self._held: str | None = None  # a traceback being held back
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            if self._held is None:
                start = text.find(_START)
                if start < 0:
                    return self._stream.write(text)
                if start:
                    self._stream.write(text[:start])
                self._held = ""
                text = text[start:]
            self._held += text
            self._release()
            return len(text)

    def _release(self) -> None:
        """Once the held traceback's exception line is complete, drop it or pass it on."""
        lines = self._held.splitlines(keepends=True)
        for i, line in enumerate(lines[1:], 1):
            if line.endswith("\n") and line.strip() and not line[0].isspace() and not line.startswith(_START):
                block, rest = "".join(lines[: i + 1]), "".join(lines[i + 1 :])
                self._held = None
                if line.strip() not in DROP:
                    self._stream.write(block)
                if rest:
                    self.write_unlocked(rest)
                return

    def write_unlocked(self, text: str) -> None:
        self._lock.release()
        try:
            self.write(text)
        finally:
            self._lock.acquire()

    def flush(self) -> None:
        with self._lock:
            if self._held:
                self._stream.write(self._held)
                self._held = None
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)
