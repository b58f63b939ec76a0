"""Where each dataset is looked for and whether its cache is intact (`nin-repro data where`, `verify`)."""

from __future__ import annotations

import json
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
        f"  1. cache          {npz} ({'present' if npz.is_file() else 'absent'})",
        f"  2. original files {readers.expected_files(name)} in {data_dir or '--data-dir (not given)'}",
        "  3. tensorflow-datasets download into $TFDS_DATA_DIR or ~/tensorflow_datasets (needs the 'download' extra)",
    ]


def verify_cache(name: str, cache_dir: Path | None = None) -> tuple[Path, bool | None]:
    """The cached ``.npz`` of ``name`` and whether it matches the sha256 recorded beside it (None: not cached)."""
    npz, meta_path = cache.cache_paths(cache_dir or cache.default_cache_dir(), name)
    if not npz.is_file():
        return npz, None
    try:
        recorded = json.loads(meta_path.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    return npz, recorded is not None and cache.sha256_file(npz) == recorded
