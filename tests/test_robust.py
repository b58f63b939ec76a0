"""Issue #12: nothing lost, nothing mislabelled; every failure one line with its exit code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from nin_repro.errors import TrainingFailed
from tests.test_train import tiny_data, tiny_recipe

pytestmark = pytest.mark.usefixtures("tiny_runs_compile_at_o0")  # tiny runs: conftest.py


def test_non_finite_loss_keeps_the_previous_metrics_history(tmp_path):
    from nin_repro.train import train_and_evaluate

    train_and_evaluate(tiny_recipe(epochs=2), tiny_data(), tmp_path, seed=0)
    metrics = tmp_path / "metrics.jsonl"
    before = metrics.read_text()
    assert len(before.splitlines()) == 2
    # Another recipe in the same run folder (no checkpoint of it to resume) whose loss blows up.
    with pytest.raises(TrainingFailed, match="loss became"):
        train_and_evaluate(tiny_recipe(epochs=3, base_lr=1e30, classifier_lr_mult=1.0), tiny_data(), tmp_path, seed=0)
    assert metrics.read_text() == before


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_second_run_in_a_locked_run_folder_is_refused(tmp_path, capsys):
    import os

    from nin_repro.cli import main
    from nin_repro.runlock import run_folder_lock

    seed_dir = tmp_path / "w" / "smoke" / "mnist" / "nin_dropout" / "seed_0"
    with run_folder_lock([seed_dir]):  # as another process training the same run holds it
        code = main(["mnist", "--smoke", "--results-dir", str(tmp_path / "r"), "--workdir", str(tmp_path / "w")])
    assert code == 4
    line = _one_error_line(capsys.readouterr().err)
    assert str(seed_dir) in line and f"process {os.getpid()}" in line and "in use" in line
    assert not (seed_dir / "metrics.jsonl").exists()
    # Released when its holder lets go (or dies): the next run takes it.
    with run_folder_lock([seed_dir]):
        pass


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last_good_one(tmp_path, monkeypatch):
    import errno

    import orbax.checkpoint as ocp
    from flax import nnx

    from nin_repro.checkpoint import Checkpointer
    from nin_repro.train import _program, init_model, train_and_evaluate

    recipe = tiny_recipe(epochs=3)
    real_save, calls = ocp.CheckpointManager.save, []

    def save(self, step, *a, **kw):
        calls.append(step)
        if len(calls) == 2:  # as orbax reports a full disk: tensorstore's error wrapping the OSError
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as e:
                raise ValueError(f'RESOURCE_EXHAUSTED: Error writing local file "{tmp_path}/x": [OS error: No space left on device]') from e
        return real_save(self, step, *a, **kw)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    with pytest.raises(TrainingFailed) as failed:
        train_and_evaluate(recipe, tiny_data(), tmp_path, seed=0, checkpoint_every_s=0)
    message = str(failed.value)
    assert "\n" not in message and failed.value.exit_code == 1
    assert "No space left on device" in message and "last good checkpoint (step 8) is kept" in message and "--workdir" in message
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)

    _, params = nnx.split(init_model(recipe, 0), nnx.Param)
    with Checkpointer(tmp_path, recipe) as ckpt:
        state, meta = ckpt.restore((params, _program(recipe).tx.init(params)))
    assert meta["position"]["step"] == 8
    # ... and the same command, once there is space, resumes from it and finishes.
    assert train_and_evaluate(recipe, tiny_data(), tmp_path, seed=0, checkpoint_every_s=0).steps == 24
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


def test_stderr_filter_drops_only_the_closed_event_loop_tracebacks():
    import io

    from nin_repro.quiet import FilteredStderr

    out = io.StringIO()
    f = FilteredStderr(out)
    f.write("progress\n")
    for chunk in ("Traceback (most recent call last):\n", '  File "base_events.py", line 806, in call_soon_threadsafe\n', "RuntimeError: Event loop is closed\n"):
        f.write(chunk)
    f.write('Traceback (most recent call last):\n  File "x.py", line 1\nValueError: a real one\n')
    f.write("error: one line\n")
    f.flush()
    assert out.getvalue() == 'progress\nTraceback (most recent call last):\n  File "x.py", line 1\nValueError: a real one\nerror: one line\n'


def test_data_download_fails_when_the_cache_cannot_be_written(tmp_path, monkeypatch, capsys):
    import errno

    from nin_repro.cli import main
    from nin_repro.data import cache
    from tests.test_data import write_mnist

    write_mnist(tmp_path / "data" / "mnist")

    def refuse(cache_dir, ds):
        raise PermissionError(errno.EACCES, "Permission denied", str(cache_dir))

    monkeypatch.setattr(cache, "save_cache", refuse)
    code = main(["data", "download", "mnist", "--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache")])
    out, err = capsys.readouterr()
    assert code == 1 and "cached at" not in out
    line = _one_error_line(err)
    assert "Permission denied" in line and str(tmp_path / "cache") in line and "--cache-dir" in line


def _no_tfds(monkeypatch, tmp_path):
    from nin_repro.data import tfds_source

    def never(*a, **kw):
        raise AssertionError("tensorflow-datasets must not be called without a network")

    monkeypatch.setattr(tfds_source, "load_tfds", never)
    monkeypatch.setattr(tfds_source, "load_tfds_splits", never)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))  # nothing prepared there
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def test_no_network_and_no_data_fails_fast_in_one_line(tmp_path, monkeypatch, capsys):
    import errno
    import socket
    import time

    from nin_repro.cli import main

    _no_tfds(monkeypatch, tmp_path)

    def offline(address, timeout=None, *a, **kw):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    from nin_repro.data import tfds_source

    monkeypatch.setattr(tfds_source, "_connect", tfds_source._socket_connect)  # the real check, on an offline socket
    monkeypatch.setattr(socket, "create_connection", offline)
    t0 = time.monotonic()
    code = main(["data", "download", "cifar10", "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and time.monotonic() - t0 < 10
    line = _one_error_line(capsys.readouterr().err)
    for words in ("www.cs.toronto.edu:443", "Network is unreachable", "--data-dir", "cifar-10-batches-py", "nin-repro data download cifar10", str(tmp_path / "cache")):
        assert words in line, words
    # The table command says the same before its time estimate (which trains for a few steps).
    code = main(["cifar10", "--epochs", "1", "--workdir", str(tmp_path / "w"), "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and "nin-repro data download cifar10" in _one_error_line(capsys.readouterr().err)


def test_a_download_host_that_never_answers_times_out(tmp_path, monkeypatch):
    import threading

    from nin_repro.data import load_dataset, tfds_source
    from nin_repro.errors import DataError

    _no_tfds(monkeypatch, tmp_path)
    release = threading.Event()
    monkeypatch.setattr(tfds_source, "_connect", lambda host, port, timeout: release.wait(30))
    monkeypatch.setattr(tfds_source, "NETWORK_TIMEOUT_S", 0.3)
    try:
        with pytest.raises(DataError, match=r"storage.googleapis.com:443 \(no answer within 0.3 s\).*--data-dir"):
            load_dataset("mnist", cache_dir=tmp_path / "cache", download=True)
    finally:
        release.set()


def _fake_run(tmp_path: Path) -> Path:
    """A run folder whose run.json is complete and valid (params/ present but empty: the
    refusals below must come before the parameters or the data are read)."""
    import numpy as np

    from nin_repro.data.cache import sha256_file
    from nin_repro.preprocess import fit_preprocessor

    run = tmp_path / "runs" / "demo" / "nin" / "seed_0"
    (run / "params").mkdir(parents=True)
    pre = fit_preprocessor("scale01", np.zeros((4, 8, 8, 1), np.uint8))
    pre_path = tmp_path / "runs" / "demo" / "preprocess.npz"
    pre.save(pre_path)
    record = {
        "recipe": dataclasses.asdict(tiny_recipe(dataset="digits5k")),
        "preprocess": {"path": str(pre_path), "sha256": sha256_file(pre_path)},
        "result": {"test_error": 0.25},
        "smoke": False,
    }
    (run / "run.json").write_text(json.dumps(record))
    return run


def _damage(run: Path, change) -> None:
    record = json.loads((run / "run.json").read_text())
    change(record)
    (run / "run.json").write_text(json.dumps(record))


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.pop("result"),
        lambda r: r["result"].update(test_error="abc"),
        lambda r: r["result"].update(test_error=None),
        lambda r: r["recipe"].update(batch_size="x"),
        lambda r: r["recipe"].pop("base_lr"),
        lambda r: r["recipe"]["model"]["blocks"][0].update(widths=5),
        lambda r: r["recipe"].update(surprise=1),
        lambda r: r.update(preprocess="p.npz"),
        lambda r: r.update(smoke="no"),
    ],
    ids=["no-result", "error-text", "error-null", "batch-text", "no-base-lr", "widths-int", "unknown-field", "preprocess-str", "smoke-str"],
)
def test_eval_of_a_damaged_run_json_is_one_line(tmp_path, capsys, change):
    from nin_repro.cli import main

    run = _fake_run(tmp_path)
    _damage(run, change)
    code = main(["eval", str(run)])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and str(run / "run.json") in line, line


def _metrics_run(tmp_path: Path, lines: list[str]) -> Path:
    run = tmp_path / "runs" / "t" / "v" / "seed_0"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return run


GOOD = [json.dumps({"epoch": e, "step": 8 * e, "lr": 0.1, "train_loss": 1.0 / e, "train_error": 0.5 / e, "test_error": 0.6 / e, "test_loss": 1.1 / e}) for e in (1, 2, 3)]


@pytest.mark.parametrize(
    "bad",
    [GOOD[2][:17], GOOD[2].replace('"train_loss": 0.3333333333333333', '"train_loss": "abc"'), GOOD[2].replace('"epoch": 3', '"epoch": "x"'), "[1, 2]"],
    ids=["cut-off", "text-loss", "text-epoch", "not-an-object"],
)
def test_plot_skips_a_damaged_metrics_line_with_a_one_line_warning(tmp_path, capsys, bad):
    from nin_repro.cli import main

    run = _metrics_run(tmp_path, [*GOOD[:2], bad])
    code = main(["plot", str(run), "--out", str(tmp_path / "curves.png")])
    err = capsys.readouterr().err
    assert code == 0 and (tmp_path / "curves.png").is_file(), err
    line = _one_error_line(err)
    assert line.startswith("warning:") and str(run / "metrics.jsonl") in line and "line 3" in line


def test_plot_of_metrics_with_no_usable_line_is_one_line(tmp_path, capsys):
    from nin_repro.cli import main

    run = _metrics_run(tmp_path, ["{", "nonsense"])
    assert main(["plot", str(run), "--out", str(tmp_path / "curves.png")]) == 2
    err = capsys.readouterr().err
    assert "no usable epoch" in err and "Traceback" not in err and not (tmp_path / "curves.png").exists()


@pytest.mark.parametrize("split", ["test", "train"])
def test_mnist_files_with_no_images_in_a_split_are_refused_before_training(tmp_path, split):
    from nin_repro.data import load_dataset
    from nin_repro.errors import DataError
    from tests.test_data import write_mnist

    write_mnist(tmp_path / "data" / "mnist", **({"n_test": 0} if split == "test" else {"n_train": 0}))
    with pytest.raises(DataError, match=f"0 {split} images") as err:
        load_dataset("mnist", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", download=False)
    assert "\n" not in str(err.value) and str(tmp_path / "data" / "mnist") in str(err.value) and err.value.exit_code == 2
    assert not (tmp_path / "cache" / "mnist.npz").exists()  # never cached as if usable


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    import os

    from nin_repro import atomic

    old = os.umask(umask)
    try:
        atomic.write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def _cached_mnist(tmp_path: Path) -> Path:
    from nin_repro.data import load_dataset
    from tests.test_data import write_mnist

    write_mnist(tmp_path / "data" / "mnist")
    load_dataset("mnist", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", download=False)
    assert (tmp_path / "cache" / "mnist.npz").is_file()
    return tmp_path / "cache"


def test_verify_says_unreadable_not_damaged_for_a_cache_it_may_not_read(tmp_path, monkeypatch, capsys):
    from nin_repro.cli import main
    from nin_repro.data import cache

    cdir = _cached_mnist(tmp_path)
    real = cache.sha256_file

    def no_permission(path):
        if Path(path).suffix == ".npz":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(cache, "sha256_file", no_permission)
    assert main(["data", "verify", "mnist", "--cache-dir", str(cdir)]) == 1
    out, err = capsys.readouterr()
    assert "unreadable" in out and "mismatch" not in out and "damaged" not in out
    line = _one_error_line(err)
    assert "unreadable" in line and "Permission denied" in line and "damaged" not in line
    # load_cache says the same, and leaves the file alone
    with pytest.warns(cache.BadCacheWarning, match="unreadable"):
        assert cache.load_cache(cdir, "mnist") is None
    assert (cdir / "mnist.npz").exists()


@pytest.mark.parametrize("command", ["verify", "download"])
def test_a_fifo_as_the_cache_sidecar_does_not_hang(tmp_path, capsys, command):
    import os

    from nin_repro.cli import main

    cdir = _cached_mnist(tmp_path)
    (cdir / "mnist.json").unlink()
    os.mkfifo(cdir / "mnist.json")
    args = ["data", command, "mnist", "--cache-dir", str(cdir)] + (["--data-dir", str(tmp_path / "data")] if command == "download" else [])
    code = main(args)  # used to block forever, opening the FIFO
    out, err = capsys.readouterr()
    if command == "verify":
        assert code == 1 and "not a regular file" in _one_error_line(err)
    else:  # rebuilt from --data-dir, the FIFO replaced by a real sidecar, with a one-line warning
        assert code == 0 and "cached at" in out and (cdir / "mnist.json").is_file()
        assert "not a regular file" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["loop", "dangling", "file"])
def test_a_broken_dataset_folder_in_data_dir_is_one_line_not_a_download(tmp_path, monkeypatch, capsys, kind):
    import os

    from nin_repro.cli import main
    from nin_repro.data import tfds_source

    _no_tfds(monkeypatch, tmp_path)
    monkeypatch.setattr(tfds_source, "unreachable", lambda url, timeout=None: pytest.fail("must not try the network"))
    data = tmp_path / "data"
    data.mkdir()
    folder = data / "cifar-10-batches-py"
    if kind == "loop":
        os.symlink(folder, folder)
    elif kind == "dangling":
        os.symlink(tmp_path / "nowhere", folder)
    else:
        folder.write_text("x")
    code = main(["data", "download", "cifar10", "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache")])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and str(folder) in line and "cifar-10-python.tar.gz" in line, line


@pytest.mark.parametrize("earlier", [False, True], ids=["first-download", "re-download"])
def test_a_download_interrupted_between_npz_and_sidecar_is_never_taken_as_complete(tmp_path, monkeypatch, capsys, earlier):
    from nin_repro import atomic
    from nin_repro.cli import main
    from nin_repro.data import cache, load_dataset
    from tests.test_data import write_mnist

    write_mnist(tmp_path / "data" / "mnist")
    cdir = tmp_path / "cache"
    if earlier:  # a complete pair from before, being rebuilt
        load_dataset("mnist", data_dir=tmp_path / "data", cache_dir=cdir, download=False)
        (cdir / "mnist.npz").unlink()  # forces the rebuild; the old sidecar stays
    real = atomic.write_text

    def interrupted(path, text):
        if Path(path).suffix == ".json":
            raise KeyboardInterrupt  # Ctrl-C after the npz, before its sidecar
        return real(path, text)

    monkeypatch.setattr(atomic, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("mnist", data_dir=tmp_path / "data", cache_dir=cdir, download=False)
    monkeypatch.setattr(atomic, "write_text", real)
    assert (cdir / "mnist.npz").is_file() and not (cdir / "mnist.json").exists()

    with pytest.warns(cache.BadCacheWarning, match="incomplete"):
        assert cache.load_cache(cdir, "mnist") is None
    assert main(["data", "where", "mnist", "--cache-dir", str(cdir)]) == 0
    where = capsys.readouterr().out
    assert "present" not in where and "incomplete" in where
    assert main(["data", "verify", "mnist", "--cache-dir", str(cdir)]) == 1
    assert "incomplete" in _one_error_line(capsys.readouterr().err)
    # The next load rebuilds it from the files, complete.
    load_dataset("mnist", data_dir=tmp_path / "data", cache_dir=cdir, download=False)
    assert cache.inspect_cache(cdir, "mnist") == ("ok", "")


def test_an_interrupt_before_training_is_one_line(tmp_path, monkeypatch, capsys):
    import nin_repro.reproduce as rep
    from nin_repro.cli import main

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(rep, "reproduce", interrupted)
    assert main(["mnist", "--smoke", "--results-dir", str(tmp_path / "r"), "--workdir", str(tmp_path / "w")]) == 130
    assert "interrupted" in _one_error_line(capsys.readouterr().err)
