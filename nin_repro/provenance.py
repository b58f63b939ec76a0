"""Provenance of a result: the commit, device, library versions, UTC date and host of this process."""

from __future__ import annotations

import datetime as _dt
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _commit() -> str:
    repo = Path(__file__).resolve().parents[1]
    head = _git(["rev-parse", "HEAD"], repo)
    if not head:
        return "unknown"
    # Only changes to the code count: the results folder is what the commands themselves write, so
    # a second command after a first one would otherwise be marked dirty by the first one's output.
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"], repo)
    if status is None:
        return f"{head}-unknown-state"
    return f"{head}-dirty" if status else head


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except Exception:  # noqa: BLE001 - provenance never raises
            out[pkg] = "unknown"
    return out


def _device() -> dict:
    try:
        import jax

        devs = jax.devices()
        return {"kind": devs[0].device_kind, "platform": devs[0].platform, "count": len(devs)}
    except Exception as e:  # noqa: BLE001
        return {"kind": "unknown", "platform": "unknown", "count": 0, "error": str(e)[:200]}


def provenance() -> dict:
    """Commit, device, library versions, UTC date and host of this process. Never raises."""
    out: dict[str, Any] = {}
    for name, fn in (
        ("commit", _commit),
        ("device", _device),
        ("versions", _versions),
        ("date", lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
        ("hostname", socket.gethostname),
    ):
        try:
            out[name] = fn()
        except Exception:  # noqa: BLE001
            out[name] = "unknown"
    return out
