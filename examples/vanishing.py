"""Vanishing and exploding gradients, seen and fixed with ``diagnose`` and ``GradientMonitor``.

(a) a tanh SimpleRNN on the adding problem over 200 steps       -> vanishing
    ... and the remedy it suggests (an LSTM with chrono init)   -> healthy
(b) a forget-biased LSTM over 20 steps                          -> healthy
(c) an LSTM whose recurrent weights are scaled up until the gradient grows back through time
                                                                 -> exploding;
    trained with SGD it diverges, the same run with compile(clipnorm=1.0) ends finite and falling
(d) a too-high learning rate turns the loss NaN mid-training; GradientMonitor(on_nan="fix")
    restores the last good weights, halves the learning rate and the run finishes

Run: ``python examples/vanishing.py [--out DIR]``; writes one figure per case into DIR
(default ``runs/vanishing``).
"""

from __future__ import annotations

import argparse
import math
import os
import warnings

import numpy as np
import torch

import lstmlab as ll
from lstmlab.data import adding_problem
from lstmlab.diagnostics import GradientMonitor, diagnose, plot_history


def adding(length: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (lstmlab.data.tasks): x (n, length, 2), y (n, 1)."""
    split = adding_problem(length=length, n_train=n, n_val=0, n_test=0, seed=seed).train
    return split.x, split.y


def _plot(report, out: str | None, name: str) -> str | None:
    if out is None:
        return None
    path = os.path.join(out, name)
    report.plot(path)
    return path


def case_a(length: int = 200, n: int = 64, units: int = 32, out: str | None = None) -> dict:
    """tanh SimpleRNN on the adding problem: the gradient from the end dies out going back."""
    x, y = adding(length, n)
    model = ll.Sequential([ll.SimpleRNN(units, seed=0), ll.Dense(1, seed=1)])
    model.compile(loss="mse")
    report = diagnose(model, x, y)
    fixed = ll.Sequential([ll.LSTM(units, bias_initializer="chrono", chrono_max_len=length, seed=0),
                           ll.Dense(1, seed=1)])
    fixed.compile(loss="mse")
    fixed_report = diagnose(fixed, x, y)
    return {"verdict": report.verdict, "decay": report.worst_decay(), "report": report,
            "fixed_verdict": fixed_report.verdict, "fixed_decay": fixed_report.worst_decay(),
            "plot": _plot(report, out, "a_simplernn_vanishing.png"),
            "fixed_plot": _plot(fixed_report, out, "a_lstm_chrono_fixed.png")}


def case_b(length: int = 20, n: int = 64, units: int = 32, out: str | None = None) -> dict:
    """An LSTM with forget-gate bias 1 (unit_forget_bias=True, the default) over 20 steps."""
    x, y = adding(length, n)
    model = ll.Sequential([ll.LSTM(units, unit_forget_bias=True, seed=0), ll.Dense(1, seed=1)])
    model.compile(loss="mse")
    report = diagnose(model, x, y)
    return {"verdict": report.verdict, "decay": report.worst_decay(), "report": report,
            "plot": _plot(report, out, "b_lstm_healthy.png")}


def _scaled_lstm(x: np.ndarray, units: int, scale: float) -> ll.Sequential:
    model = ll.Sequential([ll.LSTM(units, seed=0), ll.Dense(1, seed=1)])
    model.build(torch.as_tensor(x[:2]))
    with torch.no_grad():
        model.layers[0].weight_hh.mul_(scale)
    return model


def case_c(length: int = 50, n: int = 512, units: int = 32, epochs: int = 6, lr: float = 0.3,
           out: str | None = None) -> dict:
    """Scale W_hh by 1.5x until the gradient grows back through time, then train with and without
    clipping (plain SGD, so the gradient's size is the step's size)."""
    x, y = adding(length, n)
    scale, report = 1.0, None
    while scale < 100:
        model = _scaled_lstm(x, units, scale)
        model.compile(loss="mse")
        report = diagnose(model, x[:64], y[:64])
        if report.verdict == "exploding":
            break
        scale *= 1.5
    losses = {}
    for clip in (None, 1.0):
        model = _scaled_lstm(x, units, scale)
        model.compile(loss="mse", optimizer=ll.SGD(learning_rate=lr), clipnorm=clip)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            hist = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, seed=0)
        losses["clipnorm=1.0" if clip else "no clipping"] = hist.history["loss"]
    return {"verdict": report.verdict, "decay": report.worst_decay(), "scale": scale, "report": report,
            "remedy": report.remedies[0], "losses": losses,
            "plot": _plot(report, out, "c_lstm_exploding.png")}


def case_d(length: int = 30, n: int = 512, units: int = 16, epochs: int = 8, lr: float = 3.0,
           out: str | None = None) -> dict:
    """SGD with a learning rate far too high: the loss turns NaN mid-training; the monitor rolls back."""
    x, y = adding(length, n)
    model = ll.Sequential([ll.LSTM(units, seed=0), ll.Dense(1, seed=1)])
    model.compile(loss="mse", optimizer=ll.SGD(learning_rate=lr))
    monitor = GradientMonitor(every=4, on_nan="fix")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hist = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[monitor], seed=0)
    restores = [e for e in hist.events if e["event"] == "restore"]
    path = None
    if out is not None:
        path = os.path.join(out, "d_nan_restore_history.png")
        plot_history(hist, path)
    final = model.evaluate(x, y)
    return {"restores": restores, "final_loss": final, "epoch_losses": hist.history["loss"],
            "lr": model.optimizer.param_groups[0]["lr"], "steps": model.global_step,
            "warnings": [str(w.message) for w in caught if "GradientMonitor" in str(w.message)],
            "plot": path}


def _fmt(losses: list[float]) -> str:
    return " ".join(f"{v:.3g}" if math.isfinite(v) else str(v) for v in losses)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("runs", "vanishing"), help="folder for the figures")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)

    a = case_a(out=args.out)
    print(f"(a) SimpleRNN(tanh), adding problem T=200: verdict={a['verdict']} "
          f"decay=10^{a['decay']:+.1f}   [{a['plot']}]")
    print("    " + a["report"].explain().replace("\n", "\n    "))
    print(f"    remedy applied - LSTM(bias_initializer='chrono', chrono_max_len=200): "
          f"verdict={a['fixed_verdict']} decay=10^{a['fixed_decay']:+.1f}")

    b = case_b(out=args.out)
    print(f"(b) LSTM(unit_forget_bias=True), T=20: verdict={b['verdict']} decay=10^{b['decay']:+.1f}   "
          f"[{b['plot']}]")

    c = case_c(out=args.out)
    print(f"(c) LSTM with W_hh x{c['scale']:.3g}, T=50: verdict={c['verdict']} decay=10^{c['decay']:+.1f}; "
          f"first remedy: {c['remedy']}   [{c['plot']}]")
    for k, v in c["losses"].items():
        print(f"    SGD(lr=0.3), {k:13s} epoch losses: {_fmt(v)}")

    d = case_d(out=args.out)
    print(f"(d) SGD(lr=3.0) with GradientMonitor(on_nan='fix'): finished {d['steps']} steps, "
          f"final loss {d['final_loss']:.4f}, learning rate now {d['lr']:g}   [{d['plot']}]")
    for e in d["restores"]:
        print(f"    history.events: {e}")


if __name__ == "__main__":
    main()
