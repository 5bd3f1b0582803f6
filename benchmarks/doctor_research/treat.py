"""Treatments for the doctor research: data, model construction and a time-boxed training run.

Everything goes through lstmlab's public API (``ll.Sequential``, ``ll.LSTM``, ``ll.Attention``,
``model.fit``, ``ll.diagnose``); the two things the API lacks are small ``ll.Layer`` subclasses
here: ``Patch`` (k consecutive steps -> one step of k*F features, zero-padded at the front so the
last real step stays last) and ``MeanPool`` (average over all steps), plus ``Unpatch`` for
per-step targets (copy task).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import lstmlab as ll
from lstmlab import data as lldata

UCR_DIR = Path("/work/ucr")


# ------------------------------------------------------------------------------------ layers
class Patch(ll.Layer):
    """(B, T, F) -> (B, ceil(T/k), k*F): k consecutive steps become one step."""

    def __init__(self, k: int, name: str | None = None) -> None:
        super().__init__(name)
        self.k = int(k)

    def forward(self, x, mask=None):
        b, t, f = x.shape
        pad = (-t) % self.k
        if pad:
            x = torch.cat([x.new_zeros(b, pad, f), x], dim=1)
        return x.reshape(b, (t + pad) // self.k, self.k * f)

    def compute_mask(self, x, mask):
        return None


class Unpatch(ll.Layer):
    """(B, S, k*H) -> (B, length, H): the inverse of Patch for per-step outputs (drops the padding)."""

    def __init__(self, k: int, length: int, name: str | None = None) -> None:
        super().__init__(name)
        self.k, self.length = int(k), int(length)

    def forward(self, x, mask=None):
        b, s, kh = x.shape
        return x.reshape(b, s * self.k, kh // self.k)[:, -self.length:]

    def compute_mask(self, x, mask):
        return None


class MeanPool(ll.Layer):
    """Average over the time axis: every step gets a direct path to the loss."""

    def forward(self, x, mask=None):
        return x.mean(dim=1)

    def compute_mask(self, x, mask):
        return None


# ------------------------------------------------------------------------------------ data
@dataclass
class Data:
    name: str
    kind: str                     # "regression" | "classification" | "per_step"
    xtr: np.ndarray
    ytr: np.ndarray
    xva: np.ndarray
    yva: np.ndarray
    xte: np.ndarray
    yte: np.ndarray
    n_out: int
    baseline: float | None = None  # memoryless loss (tasks)
    meta: dict = field(default_factory=dict)


def load_task(name: str, length: int, n_train: int, seed: int = 0) -> Data:
    """adding / copy / temporal-order-4 from lstmlab.data with the benchmark sizes."""
    if name == "adding":
        s = lldata.adding_problem(length=length, n_train=n_train, n_val=1000, n_test=1000, seed=seed)
        kind, n_out, base = "regression", 1, 1.0 / 6.0
    elif name == "copy":
        s = lldata.copy_memory(length=length, n_train=n_train, n_val=1000, n_test=1000, seed=seed)
        kind, n_out, base = "per_step", s.meta["n_classes"], s.meta["baseline"]["cross_entropy"]
    elif name == "temporal-order-4":
        s = lldata.temporal_order(length=length, classes=4, n_train=n_train, n_val=1000, n_test=1000,
                                   seed=seed)
        kind, n_out, base = "classification", 4, math.log(4)
    else:
        raise ValueError(f"task: expected adding, copy or temporal-order-4, got {name!r}")
    return Data(name, kind, s.train.x, s.train.y, s.val.x, s.val.y, s.test.x, s.test.y, n_out, base)


def stratified_split(y: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``frac`` of each class to val, at least one per class with >= 2."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = int(round(frac * len(idx))) if len(idx) >= 2 else 0
        n = max(n, 1) if len(idx) >= 2 else 0
        va.extend(idx[:n])
        tr.extend(idx[n:])
    return np.sort(np.array(tr)), np.sort(np.array(va))


def load_ucr(name: str, val_frac: float = 0.25, seed: int = 0) -> Data:
    """A set exported to /work/ucr/NAME.npz (x_train (N, T, F), y_train, x_test, y_test).

    Validation = a stratified ``val_frac`` of the official train split; the test split is untouched.
    ``val_frac = 0``: train on the whole split and "validate" on the training series themselves.
    """
    z = np.load(UCR_DIR / f"{name}.npz", allow_pickle=False)
    x, y, xte, yte = z["x_train"], z["y_train"], z["x_test"], z["y_test"]
    classes = np.unique(np.concatenate([y, yte]))
    y = np.searchsorted(classes, y)
    yte = np.searchsorted(classes, yte)
    tr, va = stratified_split(y, val_frac, seed) if val_frac > 0 else (np.arange(len(y)),) * 2
    return Data(name, "classification", x[tr].astype(np.float32), y[tr], x[va].astype(np.float32), y[va],
                xte.astype(np.float32), yte, len(classes), meta={"full_x": x, "full_y": y})


def znorm(x: np.ndarray) -> np.ndarray:
    """Per-series, per-channel z-normalisation over time (the UCR convention)."""
    mu = x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    return ((x - mu) / np.where(sd < 1e-8, 1.0, sd)).astype(np.float32)


# ------------------------------------------------------------------------------------ treatments
@dataclass
class Treatment:
    """One probe's settings; the defaults are the plain config (LSTM(64) + Dense, last step)."""

    cell: str = "lstm"            # lstm | gru
    units: int = 64
    depth: int = 1
    patch: int = 1                # k consecutive steps as one step
    chrono: int | None = None     # chrono T_max (forget/input biases); None = Keras forget bias 1
    readout: str = "last"         # last | mean | attn
    bidir: bool = False
    layer_norm: bool = False
    lr: float = 3e-3
    clipnorm: float | None = 1.0
    batch: int = 64
    znorm: bool = False
    tbptt: int | None = None
    augment: int = 0              # extra window-sliced copies of each training series (0 = none)
    dropout: float = 0.0          # input dropout of the recurrent layer (on the patched input)
    wd: float | None = None       # Adam L2 weight decay

    def label(self) -> str:
        plain = Treatment()
        parts = [f"{k}={v}" for k, v in self.__dict__.items() if v != getattr(plain, k)]
        return ",".join(parts) or "plain"


def _rnn(t: Treatment, seq: bool, seed: int) -> ll.Layer:
    kw: dict = {"return_sequences": seq, "seed": seed}
    if t.dropout:
        kw["dropout"] = t.dropout
    if t.cell == "lstm":
        if t.chrono is not None:
            kw.update(bias_initializer="chrono", chrono_max_len=max(3, int(t.chrono)))
        if t.layer_norm:
            kw["layer_norm"] = True
        layer = ll.LSTM(t.units, **kw)
    elif t.cell == "gru":
        layer = ll.GRU(t.units, **kw)
    else:
        raise ValueError(f"cell: expected lstm or gru, got {t.cell!r}")
    return ll.Bidirectional(layer) if t.bidir else layer


def build_model(t: Treatment, kind: str, n_out: int, length: int, seed: int = 0) -> ll.Sequential:
    """The plain model with the treatment applied."""
    layers: list = [Patch(t.patch)] if t.patch > 1 else []
    per_step = kind == "per_step"
    for d in range(t.depth):
        last = d == t.depth - 1
        layers.append(_rnn(t, seq=per_step or not last or t.readout != "last", seed=seed + d))
    if per_step:
        if t.patch > 1:
            layers += [ll.Dense(t.patch * t.units, activation="tanh"), Unpatch(t.patch, length)]
    elif t.readout == "mean":
        layers.append(MeanPool())
    elif t.readout == "attn":
        layers.append(ll.Attention(seed=seed))
    act = None if kind == "regression" else "softmax"
    layers.append(ll.Dense(n_out, activation=act))
    torch.manual_seed(seed)
    model = ll.Sequential(layers)
    loss = "mse" if kind == "regression" else "sparse_categorical_crossentropy"
    metrics = None if kind != "classification" else ["accuracy"]
    model.compile(loss=loss, optimizer="adam", learning_rate=t.lr, clipnorm=t.clipnorm, metrics=metrics,
                  weight_decay=t.wd)
    return model


# ------------------------------------------------------------------------------------ training
def score(model: ll.Sequential, kind: str, x: np.ndarray, y: np.ndarray) -> dict:
    """Loss (and accuracy) on a split; ``key`` is the number the probe is ranked by."""
    r = model.evaluate(x, y, batch_size=256, return_dict=True)
    # accuracy first, the loss breaks ties (a small validation set has many equal accuracies)
    key = r["accuracy"] - 1e-3 * min(r["loss"], 10.0) if kind == "classification" else -r["loss"]
    return {**{k: float(v) for k, v in r.items()}, "key": float(key)}


class Probe(ll.Callback):
    """Stop at the time budget or at the target; evaluate val every ``eval_s``; keep the best weights."""

    def __init__(self, data: Data, budget_s: float, eval_s: float, target: float | None) -> None:
        self.data, self.budget_s, self.eval_s, self.target = data, budget_s, eval_s, target
        self.t0 = self.last = time.time()
        self.curve: list[dict] = []
        self.best_key, self.best_state, self.losses = -math.inf, None, []

    def _eval(self) -> None:
        d = self.data
        s = score(self.model, d.kind, d.xva, d.yva)
        self.model.train()
        loss = float(np.mean(self.losses[-20:])) if self.losses else float("nan")
        self.curve.append({"t": round(time.time() - self.t0, 2), "step": self.model.global_step,
                           "train_loss": loss, **{f"val_{k}": v for k, v in s.items()}})
        if s["key"] > self.best_key:
            self.best_key = s["key"]
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.target is not None and s["key"] >= self.target:
            self.model.stop_training = True
        self.last = time.time()

    def on_batch_end(self, batch, logs=None):
        self.losses.append(float((logs or {}).get("loss", float("nan"))))
        now = time.time()
        if now - self.t0 >= self.budget_s:
            self._eval()
            self.model.stop_training = True
        elif now - self.last >= self.eval_s:
            self._eval()

    def on_epoch_end(self, epoch, logs=None):
        if time.time() - self.last >= min(self.eval_s, 1.0) and not self.model.stop_training:
            self._eval()


def decay_at_init(model: ll.Sequential, d: Data, x: np.ndarray, n: int = 64) -> float | None:
    """log10 of the dL/dh decay over the sequence at initialisation (``ll.diagnose``)."""
    try:
        rep = ll.diagnose(model, x[:n], d.ytr[:n])
        return None if rep.worst_decay() is None else float(rep.worst_decay())
    except Exception as exc:  # diagnostics must not kill a probe
        return f"error: {exc}"  # type: ignore[return-value]


def window_slices(x: np.ndarray, y: np.ndarray, copies: int, ratio: float = 0.9,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Window slicing (Le Guennec et al. 2016): ``copies`` random crops of ``ratio`` of each series,
    stretched back to T by linear interpolation, appended to the originals."""
    if copies <= 0:
        return x, y
    rng = np.random.default_rng(seed)
    n, length, f = x.shape
    w = max(2, int(round(ratio * length)))
    out = [x] + [crop_stretch(x, rng.integers(0, length - w + 1, size=n), w) for _ in range(copies)]
    return np.concatenate(out), np.concatenate([y] * (copies + 1))


def crop_stretch(x: np.ndarray, starts: np.ndarray, w: int) -> np.ndarray:
    """Series i's window ``[starts[i], starts[i] + w)`` stretched back to T by linear interpolation."""
    n, length, _ = x.shape
    idx = starts[:, None] + np.linspace(0, w - 1, length)[None, :]
    lo = np.floor(idx).astype(int)
    hi = np.minimum(lo + 1, length - 1)
    frac = (idx - lo)[:, :, None]
    rows = np.arange(n)[:, None]
    return ((1 - frac) * x[rows, lo] + frac * x[rows, hi]).astype(np.float32)


def run(d: Data, t: Treatment, budget_s: float, eval_s: float = 10.0, target: float | None = None,
        seed: int = 0, epochs: int = 10_000) -> dict:
    """Train the treatment on ``d`` within ``budget_s``; test with the best-on-val weights."""
    prep = znorm if t.znorm else (lambda a: a)
    xtr, xva, xte = prep(d.xtr), prep(d.xva), prep(d.xte)
    dd = Data(d.name, d.kind, xtr, d.ytr, xva, d.yva, xte, d.yte, d.n_out, d.baseline)
    model = build_model(t, d.kind, d.n_out, d.xtr.shape[1], seed)
    model.build(torch.as_tensor(xtr[:2]))
    decay = decay_at_init(model, dd, xtr)
    probe = Probe(dd, budget_s, eval_s, target)
    xtr, ytr = window_slices(xtr, d.ytr, t.augment, seed=seed)
    t0 = time.time()
    model.fit(xtr, ytr, epochs=epochs, batch_size=t.batch, callbacks=[probe], verbose=0, seed=seed,
              tbptt=t.tbptt)
    wall = time.time() - t0
    if probe.best_state is not None:
        model.load_state_dict(probe.best_state)
    test = score(model, d.kind, xte, d.yte)
    return {"set": d.name, "treatment": t.label(), "settings": dict(t.__dict__), "seed": seed,
            "decay_init": decay, "steps": model.global_step, "wall_s": round(wall, 1),
            "best_val": probe.best_key, "test": test, "curve": probe.curve}
