"""The table registry: one command per experiment file that declares COMMAND_HELP."""

import os
import subprocess
import sys
import textwrap

from nin_repro.registry import experiments_dir, table_commands

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_table_commands_are_read_from_the_files_without_importing_them(tmp_path):
    (tmp_path / "second_table.py").write_text('COMMAND_HELP = "Table 2: b"\nCOMMAND_ORDER = 2\nTABLE = DEMO_TABLE = None\nraise SystemExit("imported")\n')
    (tmp_path / "first_table.py").write_text('COMMAND_HELP = "Table 1: a"\nCOMMAND_ORDER = 1\nTABLE = None\n')
    (tmp_path / "helper_module.py").write_text("TABLE = None  # no COMMAND_HELP: not a command\n")
    commands = table_commands(tmp_path)
    assert [(c.name, c.help, c.has_demo) for c in commands] == [("first-table", "Table 1: a", False), ("second-table", "Table 2: b", True)]


def test_the_shipped_tables_in_the_papers_order():
    names = [c.name for c in table_commands()]
    assert names[:6] == ["cifar10", "cifar100", "svhn", "mnist", "ablate-gap", "ablate-dropout"]
    assert "demo" not in names and "init-study" not in names  # commands of their own, not tables


def test_adding_a_table_is_adding_one_file(tmp_path):
    # A new experiment file, nothing else: it is a command in --help, in `tables` (the Makefile's
    # list) and runs --smoke end to end.
    name = f"zz_added_{os.getpid()}"
    path = experiments_dir() / f"{name}.py"
    path.write_text(
        textwrap.dedent(
            f'''
            """A table added by one file (a test writes and removes it)."""

            from nin_repro.recipe import PaperRow, Table, Variant

            from .mnist import DEPARTURE

            COMMAND_HELP = "Added by a test: one MNIST row."
            COMMAND_ORDER = 50

            TABLE = Table(
                name="{name}",
                title="Added",
                source="a test",
                rows=(PaperRow("NIN", 1.0, "none", variant="nin"),),
                variants=(Variant("nin", "NIN", DEPARTURE),),
                tolerance_pp=1.0,
            )
            '''
        )
    )
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        command = name.replace("_", "-")
        help_out = subprocess.run([sys.executable, "-m", "nin_repro", "--help"], capture_output=True, text=True, env=env, timeout=120)
        assert help_out.returncode == 0 and command in help_out.stdout and "Added by a test" in help_out.stdout
        listed = subprocess.run([sys.executable, "-m", "nin_repro", "tables"], capture_output=True, text=True, env=env, timeout=120)
        assert listed.stdout.split()[-1] == command  # order 50: after the paper's tables
        args = [command, "--smoke", "--epochs", "1", "--results-dir", str(tmp_path / "r"), "--workdir", str(tmp_path / "w")]
        run = subprocess.run([sys.executable, "-m", "nin_repro", *args], capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "Added" in (tmp_path / "r" / "smoke" / f"{name}.md").read_text()
    finally:
        path.unlink()
