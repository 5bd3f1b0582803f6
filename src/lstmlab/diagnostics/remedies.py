"""Remedies: ordered, concrete changes to a model or its training for each finding.

Every remedy is an argument that exists in lstmlab (tests/test_diagnostics_remedies.py runs each
one), written the way a user types it.
"""

from __future__ import annotations

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


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [s for s in items if not (s in seen or seen.add(s))]


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
    cells = {i.get("cell") for i in infos}
    steps = max([int(i.get("steps") or 0) for i in infos] + [1])
    out: list[str] = []
    if verdict == "exploding":
        out.append(LOWER_LR if clipped else CLIP)
        if nonfinite:
            out.append(ROLLBACK)
        out.append(tbptt(steps))
        if not clipped:
            out.append(LOWER_LR)
        if "lstm" in cells and not all(i.get("layer_norm") for i in infos if i.get("cell") == "lstm"):
            out.append(LAYER_NORM)
        out += [L2, WEIGHT_DECAY]
        if any(i.get("recurrent_initializer") != "orthogonal" for i in infos):
            out.append(ORTHOGONAL)
    elif verdict == "vanishing":
        if "rnn" in cells:
            out.append(REPLACE_RNN)
            if any(not (i.get("activation") == "relu" and i.get("recurrent_initializer") == "identity")
                   for i in infos if i.get("cell") == "rnn"):
                out.append(IRNN)
        if "lstm" in cells:
            lstm = [i for i in infos if i.get("cell") == "lstm"]
            if any(i.get("bias_initializer") != "chrono" for i in lstm):
                out.append(chrono(steps))
            if any(not i.get("unit_forget_bias") and i.get("bias_initializer") != "chrono" for i in lstm):
                out.append(FORGET_BIAS)
            if not all(i.get("layer_norm") for i in lstm):
                out.append(LAYER_NORM)
        if "gru" in cells:
            out.append(f"replace GRU with {chrono(steps)}")
        if any(i.get("recurrent_initializer") != "orthogonal" and i.get("cell") != "rnn" for i in infos):
            out.append(ORTHOGONAL)
        if saturation >= saturation_high:
            out.append(SCALE_INPUTS)
    else:
        if saturation >= saturation_high:
            out += [SCALE_INPUTS] + ([LAYER_NORM] if "lstm" in cells else [])
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
