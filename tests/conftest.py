"""Shared fixtures: one smoke run of `nin-repro cifar10` for every test that reads its output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke_cifar10(tmp_path_factory):
    """Runs `nin-repro cifar10 --smoke` once; returns its folders and the table JSON."""
    from nin_repro.cli import main

    root = tmp_path_factory.mktemp("smoke")
    results, runs = root / "results", root / "runs"
    code = main(["cifar10", "--smoke", "--results-dir", str(results), "--workdir", str(runs)])
    assert code == 0
    table = json.loads((results / "smoke" / "cifar10.json").read_text())
    return {"root": root, "results": results, "runs": runs, "table": table}
