"""Progress display: plain lines off a terminal, a bar on one."""

from __future__ import annotations

import io

from rich.console import Console

from nin_repro.progress import NullProgress, RichProgress


def drive(p, epochs=3, spe=10):
    p.start(epochs * spe, "seed 0")
    step = 0
    for e in range(epochs):
        for _ in range(spe // 5):
            step += 5
            p.update(step, epoch=step / spe, loss=2.0 - 0.1 * e, img_per_s=1000.0)
        rec = {"epoch": e + 1, "step": step, "lr": 0.1, "train_loss": 1.23456 - 0.1 * e, "train_error": 0.451, "wall_s": 1.0}
        if e == epochs - 1:
            rec.update(test_error=0.472, test_loss=1.0)
        p.epoch_end(rec)
    p.close()


def test_plain_lines_when_not_a_terminal():
    buf = io.StringIO()
    drive(RichProgress(Console(file=buf, force_terminal=False, width=40)))
    out = buf.getvalue()
    lines = out.splitlines()
    assert len(lines) == 3, out  # one per epoch, not wrapped at width 40
    assert "\x1b" not in out and "\r" not in out
    assert lines[0].startswith("seed 0  epoch 1/3  loss 1.2346  train err 45.1%")
    assert "1000 img/s" in lines[0] and "eta " in lines[0]
    assert "test err" not in lines[0]
    assert lines[2].startswith("seed 0  epoch 3/3  loss 1.0346  train err 45.1%  test err 47.2%")
    assert lines[2].endswith("eta 0s")


def test_epoch_img_per_s_is_images_over_time():
    buf = io.StringIO()
    p = RichProgress(Console(file=buf, force_terminal=False))
    p.start(20, "s")
    p.update(5, epoch=0.5, loss=1.0, img_per_s=1000.0)
    p.update(10, epoch=1.0, loss=1.0, img_per_s=3000.0)
    p.epoch_end({"epoch": 1, "step": 10, "train_loss": 1.0, "train_error": 0.5})
    assert "1500 img/s" in buf.getvalue()  # 2 chunks of equal size: harmonic mean
    assert "epoch 1/2" in buf.getvalue()


def test_terminal_mode_runs():
    buf = io.StringIO()
    drive(RichProgress(Console(file=buf, force_terminal=True, width=120)))
    out = buf.getvalue()
    assert "seed 0" in out and "epoch 3/3" in out and "test err 47.2%" in out


def test_null_progress_shows_nothing(capfd):
    drive(NullProgress())
    assert capfd.readouterr() == ("", "")
