"""Where each dataset is looked for and whether its cache is intact (`nin-repro data where`, `verify`)."""

from __future__ import annotations

from pathlib import Path

from nin_repro.data import DATASETS, cache, readers
from nin_repro.errors import UsageError


def dataset_names(dataset: str | None) -> list[str]:
    """``[dataset]`` once it is known to exist; every dataset for None."""
    if dataset is None:
        return list(DATASETS)
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    return [dataset]


def where(name: str, data_dir: Path | None = None, cache_dir: Path | None = None) -> list[str]:
    """The places ``name`` is looked for, in order (the cache, the original files, tensorflow-datasets), as lines."""
    npz, _ = cache.cache_paths(cache_dir or cache.default_cache_dir(), name)
    return [
        f"{name}:",
        f"  1. cache          {npz} ({cache.presence(cache_dir or cache.default_cache_dir(), name)})",
        f"  2. original files {readers.expected_files(name)} in {data_dir or '--data-dir (not given)'}",
        "  3. tensorflow-datasets download into $TFDS_DATA_DIR or ~/tensorflow_datasets (needs the 'download' extra)",
    ]


def verify_cache(name: str, cache_dir: Path | None = None) -> tuple[Path, str, str]:
    """The cached ``.npz`` of ``name`` and its state (``cache.inspect_cache``: "not cached", "ok",
    "incomplete", "unreadable", "not a regular file", "damaged") with a detail."""
    cdir = cache_dir or cache.default_cache_dir()
    npz, _ = cache.cache_paths(cdir, name)
    state, detail = cache.inspect_cache(cdir, name)
    return npz, state, detail


def cache_problem(states: dict[str, tuple[str, str]]) -> str | None:
    """One line for `data verify` when a cache entry is not usable (unreadable first: it is not
    fixed by a download), None when every cached entry is ok."""
    bad: dict[str, list[tuple[str, str]]] = {}
    for name, (state, detail) in states.items():
        if state not in ("ok", "not cached"):
            bad.setdefault(state, []).append((name, detail))
    if "unreadable" in bad:
        _, detail = bad["unreadable"][0]
        return f"unreadable cache for {', '.join(n for n, _ in bad['unreadable'])} ({detail}): check the file permissions (or pass a --cache-dir of your own)"
    if not bad:
        return None
    state, [(name, detail), *_] = next(iter(bad.items()))
    names = ", ".join(n for entries in bad.values() for n, _ in entries)
    return f"{state} cache for {names} ({detail}): run `nin-repro data download {name}` to rebuild it"
