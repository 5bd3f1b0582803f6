"""Per-batch progress bars: ``fit(verbose=1)`` and ``lstmlab train`` on a terminal (a fake tty here),
plain epoch lines otherwise."""

from __future__ import annotations

import io
import json
import re
import sys

import numpy as np
import pytest

import lstmlab as ll
from lstmlab import callbacks as C
from lstmlab import train as T


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """``time.monotonic`` / ``time.time`` that advance ``step`` seconds per call."""

    def __init__(self, step: float = 1.0) -> None:
        self.t, self.step = 0.0, step

    def monotonic(self) -> float:
        self.t += self.step
        return self.t

    time = monotonic


class BatchLosses(ll.Callback):
    def on_train_begin(self, logs=None):
        self.rows = []

    def on_batch_end(self, batch, logs=None):
        self.rows.append((batch, logs["loss"], logs["size"], logs["batches"]))


def _model_and_data(n=7):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, 5, 3)).astype(np.float32), rng.normal(size=(n, 1)).astype(np.float32)
    model = ll.Sequential([ll.LSTM(4), ll.Dense(1)])
    model.compile(loss="mse", optimizer="adam")
    return model, x, y


def _frames(text: str) -> list[str]:
    """What a terminal showed: each piece between carriage returns / newlines, padding stripped."""
    return [f.rstrip() for f in re.split(r"[\r\n]", text) if f.strip()]


def test_bar_layout_and_eta_follow_keras(monkeypatch):
    out = FakeTTY()
    monkeypatch.setattr(C, "time", Clock(0.25))
    bar = C.Progbar(200, out, width=30, interval=0.0)  # starts at t = 0.25
    for k in range(1, 13):
        bar.update(k, {"loss": 0.41})
    # 12 steps in 3.25 - 0.25 s: the other 188 take 188 * 3 / 12 s; 12/200 of 30 columns: 1 (the arrow)
    assert _frames(out.getvalue())[-1] == f" 12/200 [>{'.' * 29}] - ETA: 47s - loss: 0.4100"
    assert bar.bar(200) == "200/200 [" + "=" * 30 + "]" and bar.bar(0) == "  0/200 [" + "." * 30 + "]"
    assert bar.bar(100) == "100/200 [" + "=" * 14 + ">" + "." * 15 + "]"
    assert C._eta(59.4) == "59s" and C._eta(65) == "1:05" and C._eta(7389) == "2:03:09"
    assert C._value(0.41) == "0.4100" and C._value(2.5e-5) == "2.5000e-05"
    width = bar.shown
    bar.clear()
    assert out.getvalue().endswith("\r" + " " * width + "\r") and bar.shown == 0


def test_a_resumed_epoch_counts_its_rate_from_the_first_batch_it_runs(monkeypatch):
    out = FakeTTY()
    monkeypatch.setattr(C, "time", Clock(1.0))
    bar = C.Progbar(10, out, interval=0.0)  # t0 = 1
    bar.update(7)  # batches 1-6 ran before the resume; batch 7 took 2 - 1 s
    assert _frames(out.getvalue())[-1].endswith("- ETA: 3s")


def test_fit_verbose_1_on_a_terminal_draws_a_bar_per_batch(monkeypatch):
    model, x, y = _model_and_data()
    out, seen = FakeTTY(), BatchLosses()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(C, "time", Clock())  # every redraw passes the 0.1 s throttle
    hist = model.fit(x, y, epochs=2, batch_size=2, verbose=1, callbacks=[seen], shuffle=False)
    frames = _frames(out.getvalue())
    assert frames[0] == "Epoch 1/2" and frames[6] == "Epoch 2/2" and len(frames) == 12
    for e in range(2):
        rows = seen.rows[4 * e:4 * e + 4]
        assert [r[3] for r in rows] == [4] * 4  # the loop tells the epoch's number of batches
        for k, frame in enumerate(frames[1 + 6 * e:4 + 6 * e]):  # running mean of the batch losses
            mean = sum(r[1] * r[2] for r in rows[:k + 1]) / sum(r[2] for r in rows[:k + 1])
            assert re.fullmatch(rf"{k + 1}/4 \[[=>.]{{30}}\] - ETA: \d+s - loss: {mean:.4f}", frame), frame
        assert frames[4 + 6 * e].startswith("4/4 [" + "=" * 30 + "] - loss: ")  # the last batch: no ETA
        last = frames[5 + 6 * e]
        assert last.startswith("4/4 [" + "=" * 30 + "] - ") and "ms/step" in last
        assert last.endswith(f"loss: {hist.history['loss'][e]:.4f}")


def test_fit_off_a_terminal_prints_one_line_per_epoch(capsys):
    model, x, y = _model_and_data()
    model.fit(x, y, epochs=2, batch_size=2, verbose=1)
    text = capsys.readouterr().out
    assert "\r" not in text and "[" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 2 and all(re.match(rf"Epoch {e + 1}/2 - [\d.]+s - loss: ", s) for e, s in enumerate(lines))


def _config(tmp_path, verbose: int):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[data]\nsource = "adding"\nlength = 6\nn_train = 40\nn_val = 8\nn_test = 8\n'
                   '[model]\nlayers = [{type = "LSTM", units = 4}, {type = "Dense"}]\n'
                   f"[train]\nepochs = 2\nbatch_size = 8\nverbose = {verbose}\n[train.monitor]\nenabled = false\n")
    return cfg


def test_lstmlab_train_on_a_terminal_shows_a_bar_that_gives_way_to_the_epoch_lines(tmp_path, monkeypatch):
    out = FakeTTY()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(C, "time", Clock())
    assert T.main([str(_config(tmp_path, 1)), "--run-dir", str(tmp_path / "run")]) == 0
    text = out.getvalue()
    frames = _frames(text)
    bars = [f for f in frames if re.match(r"epoch \d+  \d+/5 \[", f)]
    assert [f.split()[2] for f in bars] == [f"{k}/5" for k in range(1, 6)] * 2
    # what stays on screen: the lines without the erased bar
    shown = [line.rsplit("\r", 1)[-1] for line in text.split("\n") if line.rsplit("\r", 1)[-1].strip()]
    assert [s.split(" - ")[0] for s in shown if s.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    assert json.loads(shown[-1])["status"] == "completed"
    assert all("[" not in s or s.startswith("{") for s in shown)


@pytest.mark.parametrize("verbose", [0, 2])
def test_lstmlab_train_without_verbose_1_draws_no_bar(tmp_path, monkeypatch, verbose):
    out = FakeTTY()
    monkeypatch.setattr(sys, "stdout", out)
    assert T.main([str(_config(tmp_path, verbose)), "--run-dir", str(tmp_path / "run")]) == 0
    assert "\r" not in out.getvalue() and json.loads(out.getvalue().strip().splitlines()[-1])["epochs"] == 2
