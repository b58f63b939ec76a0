"""The experiment files and the table commands they declare.

Light on purpose (no JAX, no recipes imported): ``nin-repro --help`` lists the tables from here.
Adding a table is adding one file to ``experiments/`` that defines ``TABLE`` and ``COMMAND_HELP``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from pathlib import Path

from nin_repro.errors import UsageError


@dataclasses.dataclass(frozen=True)
class TableCommand:
    """A table command, as its experiment file declares it."""

    name: str  # the command, e.g. "ablate-gap" (file experiments/ablate_gap.py)
    help: str  # the file's COMMAND_HELP
    order: float  # the file's COMMAND_ORDER: the paper's table number; ours after
    has_demo: bool  # the file defines DEMO_TABLE (--demo)


def _checkout_experiments() -> Path | None:
    """The top-level ``experiments/`` folder when this nin_repro runs from a source checkout, else None.
    It wins over any installed copy: an editable install of another checkout would otherwise serve
    that checkout's experiment files to this one's code."""
    folder = Path(__file__).resolve().parents[1] / "experiments"
    return folder if (folder / "__init__.py").is_file() and (folder.parent / "pyproject.toml").is_file() else None


def experiments_dir() -> Path:
    """The experiment files: the source checkout's top-level folder, else ``nin_repro/experiments`` (installed)."""
    checkout = _checkout_experiments()
    if checkout is not None:
        return checkout
    try:
        spec = importlib.util.find_spec("nin_repro.experiments")
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parents[1] / "experiments"


def table_commands(folder: Path | None = None) -> list[TableCommand]:
    """One command per experiment file that declares ``COMMAND_HELP``: adding a table is adding a
    file. Read with ``ast``, not imported, so ``--help`` does not load every recipe (and JAX)."""
    import ast

    out = []
    for path in sorted((folder or experiments_dir()).glob("*.py")):
        names: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names[target.id] = node.value
        if "COMMAND_HELP" not in names:
            continue
        literal = {k: ast.literal_eval(v) for k, v in names.items() if k in ("COMMAND_HELP", "COMMAND_ORDER")}
        out.append(TableCommand(path.stem.replace("_", "-"), literal["COMMAND_HELP"], float(literal.get("COMMAND_ORDER", 99)), "DEMO_TABLE" in names))
    return sorted(out, key=lambda c: (c.order, c.name))


def register_experiments() -> str:
    """Make ``nin_repro.experiments`` importable: installed, it is the package; in a source checkout
    (PYTHONPATH=., no install) it is registered from the top-level ``experiments/`` folder, even when
    another copy is installed (``_checkout_experiments``)."""
    package = "nin_repro.experiments"
    if package not in sys.modules:
        folder = _checkout_experiments()
        if folder is None:
            try:
                importlib.import_module(package)
                return package
            except ModuleNotFoundError as err:
                if err.name != package:
                    raise
                folder = Path(__file__).resolve().parents[1] / "experiments"
                if not folder.is_dir():
                    raise UsageError(f"the experiments folder is missing (looked in {folder}): reinstall nin-repro") from None
        spec = importlib.util.spec_from_file_location(package, folder / "__init__.py", submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return package


def load_experiment(name: str):
    """The module ``experiments/<name>.py``. Installed packages carry the folder as
    ``nin_repro.experiments``; in a source checkout run with PYTHONPATH=. it is registered under
    that name from the top-level folder, so experiment files can import each other."""
    package = register_experiments()
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{package}.{name}":
            raise
        raise UsageError(f"no experiment file for {name!r}") from None
