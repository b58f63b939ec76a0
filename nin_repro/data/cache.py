"""The project's dataset cache: one uncompressed ``<name>.npz`` per dataset plus a ``<name>.json``
sidecar holding its sha256, the source it was built from, shapes and class names.

The cache lives outside the data folder (which may be read-only). A damaged or stale cache is not
an error: :func:`load_cache` warns in one line and returns None so the caller rebuilds it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import stat
import warnings
import zipfile
from pathlib import Path

import numpy as np

from nin_repro import atomic
from nin_repro.data import Dataset, validate_dataset
from nin_repro.errors import DataError

CACHE_FORMAT = "nin-repro-dataset-cache/1"
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


class BadCacheWarning(UserWarning):
    """A cache file was unreadable or failed its checksum; it will be rebuilt."""


def default_cache_dir() -> Path:
    """``$NIN_REPRO_CACHE``, else ``$XDG_CACHE_HOME/nin-repro``, else ``~/.cache/nin-repro`` (a per-user
    folder in the temp dir when there is no home directory)."""
    if os.environ.get("NIN_REPRO_CACHE"):
        return Path(os.environ["NIN_REPRO_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "nin-repro"
    try:
        return Path.home() / ".cache" / "nin-repro"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry (some containers): a per-user temp folder
        import tempfile

        return Path(tempfile.gettempdir()) / f"nin-repro-cache-{os.getuid()}"


def cache_paths(cache_dir: str | Path, name: str) -> tuple[Path, Path]:
    """(npz path, json sidecar path) for dataset ``name``."""
    cache_dir = Path(cache_dir)
    return cache_dir / f"{name}.npz", cache_dir / f"{name}.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_cache(cache_dir: str | Path, ds: Dataset) -> Path:
    """Write ``ds`` to ``<cache_dir>/<name>.npz`` (+ ``.json``) atomically; returns the npz path.

    Raises OSError if the cache cannot be written (the caller decides whether that matters).
    """
    npz_path, json_path = cache_paths(cache_dir, ds.name)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: getattr(ds, k) for k in _ARRAYS}
    # The sidecar is the pair's commit mark, written last: an old one goes first, so an interrupted
    # rewrite leaves an npz without a sidecar ("incomplete"), never a new npz beside an old sidecar.
    json_path.unlink(missing_ok=True)
    # Uncompressed: loading 180 MB of CIFAR is faster than inflating it, and disk is cheap here.
    atomic.write_with(npz_path, lambda f: np.savez(f, **arrays))
    meta = {
        "format": CACHE_FORMAT,
        "name": ds.name,
        "source": ds.source,
        "sha256": sha256_file(npz_path),
        "num_classes": ds.num_classes,
        "class_names": list(ds.class_names),
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic.write_text(json_path, json.dumps(meta, indent=1) + "\n")
    return npz_path


def _bad_cache(npz_path: Path, why: str, *, ours: bool, state: str = "unusable") -> None:
    """Warn in one line and, if the npz is known to be ours, remove it so the warning does not repeat."""
    why = " ".join(why.split())  # keep the warning on one line
    action = "removed it; rebuilding" if ours else "ignoring it; rebuilding"
    if ours:
        try:
            npz_path.unlink(missing_ok=True)
        except OSError:
            action = "ignoring it (could not remove it); rebuilding"
    warnings.warn(f"dataset cache {npz_path} is {state} ({why}); {action}", BadCacheWarning, stacklevel=3)


class NotRegularFile(OSError):
    """A cache path that is a FIFO, a device, a folder ...: opening it could block forever."""


def _regular(path: Path) -> Path:
    """``path`` if it is a regular file (after symlinks); NotRegularFile otherwise, FileNotFoundError
    if it is missing. Checked before opening: a FIFO would block the open (and the command) forever."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise NotRegularFile(f"{path} is not a regular file")
    return path


def read_sidecar(json_path: Path) -> dict:
    """The parsed sidecar. Raises FileNotFoundError, NotRegularFile, another OSError (unreadable)
    or ValueError (not a nin-repro cache description)."""
    meta = json.loads(_regular(json_path).read_text())
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise ValueError("sidecar is not a nin-repro cache description")
    return meta


def presence(cache_dir: str | Path, name: str) -> str:
    """Cheap (no hashing): "present", "absent", or "incomplete ..." for an npz without its sidecar."""
    npz_path, json_path = cache_paths(cache_dir, name)
    if not npz_path.is_file():
        return "absent"
    if not json_path.is_file():
        return f"incomplete: no {json_path.name} beside it, an interrupted write; `nin-repro data download {name}` rebuilds it"
    return "present"


def inspect_cache(cache_dir: str | Path, name: str) -> tuple[str, str]:
    """(state, detail) of the cache entry ``name`` without loading it: "not cached", "ok",
    "incomplete" (an npz without its sidecar: an interrupted write), "unreadable" (permissions),
    "not a regular file", "damaged" (checksum or sidecar wrong)."""
    npz_path, json_path = cache_paths(cache_dir, name)
    if not os.path.lexists(npz_path):
        return "not cached", ""
    for path in (npz_path, json_path):
        try:
            _regular(path)
        except FileNotFoundError:
            return ("incomplete", f"no {json_path.name} beside it: an interrupted write") if path == json_path else ("damaged", "a broken symbolic link")
        except NotRegularFile as e:
            return "not a regular file", str(e)
        except OSError as e:
            return "unreadable", f"{path}: {e.strerror or e}"
    try:
        meta = read_sidecar(json_path)
        expected = meta["sha256"]
    except NotRegularFile as e:
        return "not a regular file", str(e)
    except OSError as e:
        return "unreadable", f"{json_path}: {e.strerror or e}"
    except (ValueError, KeyError, TypeError) as e:
        return "damaged", f"{json_path.name}: {type(e).__name__}: {e}"
    try:
        actual = sha256_file(npz_path)
    except OSError as e:
        return "unreadable", f"{npz_path}: {e.strerror or e}"
    return ("ok", "") if actual == expected else ("damaged", "checksum mismatch")


def load_cache(cache_dir: str | Path, name: str) -> Dataset | None:
    """The cached dataset ``name``, or None if there is none or it is damaged (with a warning)."""
    npz_path, json_path = cache_paths(cache_dir, name)
    if not npz_path.is_file():
        return None
    try:
        meta = read_sidecar(json_path)
        expected_sha, num_classes, class_names = meta["sha256"], int(meta["num_classes"]), tuple(meta["class_names"])
    except FileNotFoundError:
        # An npz without its sidecar: a write interrupted between the two (save_cache writes the
        # sidecar last), or not ours. Never taken as complete; the rebuild overwrites it.
        _bad_cache(npz_path, f"no {json_path.name} beside it: an interrupted write", ours=False, state="incomplete")
        return None
    except NotRegularFile as e:
        _bad_cache(npz_path, str(e), ours=False)
        return None
    except OSError as e:
        _bad_cache(npz_path, f"{json_path}: {e.strerror or e}; check its permissions", ours=False, state="unreadable")
        return None
    except (ValueError, KeyError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        # Without our sidecar the npz may not be ours: leave it, the rebuild overwrites it.
        _bad_cache(npz_path, f"sidecar {json_path.name}: {type(e).__name__}: {e}", ours=False)
        return None
    try:
        actual_sha = sha256_file(npz_path)
    except OSError as e:
        _bad_cache(npz_path, f"{e.strerror or e}; check its permissions", ours=False, state="unreadable")
        return None
    if actual_sha != expected_sha:
        _bad_cache(npz_path, "sha256 does not match its .json", ours=True)
        return None
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in _ARRAYS}
        ds = Dataset(name=name, num_classes=num_classes, class_names=class_names, source=f"cache:{npz_path}", **arrays)
        validate_dataset(ds)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, DataError) as e:
        _bad_cache(npz_path, f"{type(e).__name__}: {e}", ours=True)
        return None
    return ds
