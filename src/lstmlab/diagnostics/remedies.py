"""Remedies: ordered, concrete changes to a model or its training for each finding.

Every remedy is an argument that exists in lstmlab (tests/test_diagnostics_remedies.py runs each
one), written the way a user types it.
"""

from __future__ import annotations

from .. import cells

CLIP = "compile(clipnorm=1.0)"
GLOBAL_CLIP = "compile(global_clipnorm=1.0)"
LOWER_LR = "compile(optimizer=ll.Adam(learning_rate=1e-4))  (a smaller learning rate)"
L2 = ("LSTM/GRU/SimpleRNN(..., kernel_regularizer=ll.regularizers.l2(1e-4), "
      "recurrent_regularizer=ll.regularizers.l2(1e-4))")
WEIGHT_DECAY = "compile(weight_decay=1e-4)"
LAYER_NORM = "LSTM(..., layer_norm=True)"
REPLACE_RNN = "replace SimpleRNN with LSTM or GRU"
IRNN = "SimpleRNN(activation='relu', recurrent_initializer='identity') (IRNN)"
ORTHOGONAL = "recurrent_initializer='orthogonal'"
FORGET_BIAS = "LSTM(..., unit_forget_bias=True)"
ROLLBACK = "GradientMonitor(on_nan='fix')  (roll back non-finite steps and halve the learning rate)"
SCALE_INPUTS = "scale the inputs to zero mean and unit variance (saturated gates pass no gradient)"
RAISE_LR = "compile(optimizer=ll.Adam(learning_rate=3e-3))  (a larger learning rate)"


def chrono(steps: int) -> str:
    return f"LSTM(..., bias_initializer='chrono', chrono_max_len={max(int(steps), 3)})"


def tbptt(steps: int) -> str:
    return f"fit(..., tbptt={max(1, min(int(steps), max(10, int(steps) // 4)))})"


def doctor_treatment(cell: str, steps: int) -> str:
    """The doctor's treatment for a layer that keeps losing the gradient (what the GradientMonitor names
    when it cannot fix the layer in place)."""
    k = max(2, -(-int(steps) // 50))
    patch = f"Patch(size={k}) before it, then {chrono(-(-int(steps) // k))}" if steps >= 100 else chrono(steps)
    if cell == "rnn":
        return f"{REPLACE_RNN}: {patch}"
    if cell == "gru":
        return f"replace GRU with an LSTM: {patch}"
    return patch


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [s for s in items if not (s in seen or seen.add(s))]


def _vanishing_rnn(infos: list[dict], steps: int) -> list[str]:
    irnn = all(i.get("activation") == "relu" and i.get("recurrent_initializer") == "identity" for i in infos)
    return [REPLACE_RNN] + ([] if irnn else [IRNN])


def _vanishing_lstm(infos: list[dict], steps: int) -> list[str]:
    out = []
    if any(i.get("bias_initializer") != "chrono" for i in infos):
        out.append(chrono(steps))
    if any(not i.get("unit_forget_bias") and i.get("bias_initializer") != "chrono" for i in infos):
        out.append(FORGET_BIAS)
    if not all(i.get("layer_norm") for i in infos):
        out.append(LAYER_NORM)
    return out


def _vanishing_gru(infos: list[dict], steps: int) -> list[str]:
    return [f"replace GRU with {chrono(steps)}"]


# cell -> its own advice against vanishing gradients, in the order it is given
VANISHING = {cells.RNN.name: _vanishing_rnn, cells.LSTM.name: _vanishing_lstm, cells.GRU.name: _vanishing_gru}


def _cell(info: dict) -> cells.Cell | None:
    return cells.CELLS.get(info.get("cell"))


def _without_layer_norm(infos: list[dict]) -> bool:
    """Some direction's cell supports layer norm and does not use it."""
    return any((c := _cell(i)) is not None and c.layer_norm and not i.get("layer_norm") for i in infos)


def _exploding(infos: list[dict], steps: int, clipped: bool, nonfinite: bool) -> list[str]:
    out = [LOWER_LR if clipped else CLIP] + ([ROLLBACK] if nonfinite else []) + [tbptt(steps)]
    if not clipped:
        out.append(LOWER_LR)
    if _without_layer_norm(infos):
        out.append(LAYER_NORM)
    out += [L2, WEIGHT_DECAY]
    if any(i.get("recurrent_initializer") != "orthogonal" for i in infos):
        out.append(ORTHOGONAL)
    return out


def _vanishing(infos: list[dict], steps: int, saturated: bool) -> list[str]:
    out: list[str] = []
    for name, advise in VANISHING.items():
        mine = [i for i in infos if i.get("cell") == name]
        if mine:
            out += advise(mine, steps)
    # gated cells want an orthogonal W_hh; a plain RNN got the IRNN (identity) advice above
    if any(i.get("recurrent_initializer") != "orthogonal" and ((c := _cell(i)) is None or c.gated)
           for i in infos):
        out.append(ORTHOGONAL)
    return out + ([SCALE_INPUTS] if saturated else [])


def suggest(verdict: str, layers: dict[str, dict], verdicts: dict[str, str] | None = None,
            saturation: float = 0.0, clipped: bool = False, nonfinite: bool = False,
            saturation_high: float = 0.5) -> list[str]:
    """Ordered remedies for ``verdict``.

    ``layers``: direction name -> info dict (``cell``, ``steps``, ``activation``,
    ``recurrent_initializer``, ``unit_forget_bias``, ``bias_initializer``, ``layer_norm``);
    ``verdicts``: per-direction verdicts (the directions in trouble shape the advice);
    ``saturation``: the largest gate saturation share; ``clipped``: clipping already on.
    """
    verdicts = verdicts or {}
    bad = [n for n, v in verdicts.items() if v == verdict] or list(layers)
    infos = [layers[n] for n in bad if n in layers]
    steps = max([int(i.get("steps") or 0) for i in infos] + [1])
    saturated = saturation >= saturation_high
    if verdict == "exploding":
        out = _exploding(infos, steps, clipped, nonfinite)
    elif verdict == "vanishing":
        out = _vanishing(infos, steps, saturated)
    elif saturated:
        out = [SCALE_INPUTS] + ([LAYER_NORM] if any(c and c.layer_norm for c in map(_cell, infos)) else [])
    else:
        out = []
    return _unique(out)


def for_param_growth() -> list[str]:
    """Remedies for parameter norms that keep growing."""
    return [WEIGHT_DECAY, L2, CLIP]


def for_slow_loss(verdict: str | None, layers: dict[str, dict],
                  verdicts: dict[str, str] | None = None) -> list[str]:
    """Remedies for a loss that barely falls early in training (depends on the gradient verdict)."""
    if verdict in ("vanishing", "exploding"):
        return suggest(verdict, layers, verdicts)
    return [RAISE_LR, SCALE_INPUTS]
