"""One process per run folder: an advisory lock (``fcntl.flock``) on ``<run folder>/.run.lock``.

Two identical commands on one --workdir would otherwise both train the same seed and append every
epoch twice. The lock is taken without waiting; the second process stops with a one-line error
that names the folder and the process holding it. The kernel releases the lock when its holder
dies, however it dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from nin_repro.errors import RunFolderBusy

LOCK_NAME = ".run.lock"


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    return f"process {text[0]}" if text and text[0].isdigit() else "another process"


@contextlib.contextmanager
def run_folder_lock(folders: list[Path]) -> Iterator[None]:
    """Hold the lock of every folder in ``folders`` (created if missing) for the block."""
    import fcntl

    held: list[int] = []
    try:
        for folder in folders:
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)  # no O_TRUNC: the holder's pid stays readable
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = _holder(fd)
                os.close(fd)
                raise RunFolderBusy(
                    f"run folder {folder} is in use by {who} (another nin-repro training the same run): wait for it to finish or stop it, or pass another --workdir"
                ) from None
            held.append(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        for fd in held:
            os.close(fd)  # closing the last descriptor releases the flock
