"""The cell table: every fact about a recurrent cell kind, in one place.

Layers, engines (Python and C++), taps, trace, config, diagnostics and reports read a cell's
gates, states, activations and saturation thresholds from here instead of testing the kind
by string.  Gate order is the order of the row blocks in ``weight_ih`` / ``weight_hh`` and is
PyTorch's (LSTM i, f, g, o; GRU r, z, n), so weights move to and from ``torch.nn`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

# A sigmoid gate is saturated outside (SIGMOID_LOW, SIGMOID_HIGH); a tanh value when |v| > TANH_LIMIT;
# a relu unit when it is exactly 0 ("dead").  The C++ kernels receive these numbers as arguments.
SIGMOID_LOW = 0.01
SIGMOID_HIGH = 0.99
TANH_LIMIT = 0.99

# How each kind of saturation reads in a message (diagnose, reports).
SATURATION_RULES: dict[str, str] = {
    "sigmoid": f"outside ({SIGMOID_LOW:g}, {SIGMOID_HIGH:g})",
    "tanh": f"|tanh| > {TANH_LIMIT:g}",
    "relu": "dead (relu output 0)",
}


@dataclass(frozen=True)
class Cell:
    """One recurrent cell kind.

    ``gates``: gate names in weight-row order; ``gate_act``: each gate's activation
    (``"sigmoid"``, ``"tanh"`` or ``"act"`` = the layer's ``activation`` argument);
    ``states``: the carried states, the output state ``h`` first (``("h", "c")`` for LSTM);
    ``activations``: the values the layer's ``activation`` may take; ``seed_names``: each
    gate's weight block in the seed's notation (``W_c`` is the LSTM's candidate ``g``).
    """

    name: str  # "lstm" | "gru" | "rnn": the key used in configs, engines and file formats
    layer: str  # the lstmlab / Keras layer class name
    torch_name: str  # the torch.nn module of the same equations
    gates: tuple[str, ...]
    gate_act: tuple[str, ...]
    states: tuple[str, ...]
    seed_names: tuple[str, ...]
    activations: tuple[str, ...] = ("tanh",)
    chrono: bool = False  # supports bias_initializer="chrono" and unit_forget_bias
    layer_norm: bool = False  # supports layer_norm=True

    @property
    def n_gates(self) -> int:
        return len(self.gates)

    @property
    def has_cell_state(self) -> bool:
        return "c" in self.states

    @property
    def uses_activation(self) -> bool:
        """Whether the equations read the layer's ``activation`` (engines then take it as an argument)."""
        return "act" in self.gate_act

    @property
    def gated(self) -> bool:
        """Whether the cell has sigmoid gates (LSTM, GRU) or is a plain recurrence (SimpleRNN)."""
        return "sigmoid" in self.gate_act

    @property
    def value_gates(self) -> tuple[str, ...]:
        """Gates whose value is not itself a state (SimpleRNN's one block *is* ``h``): what trace records."""
        return tuple(g for g in self.gates if g not in self.states)

    def gate_kind(self, gate: str, activation: str = "tanh") -> str:
        """``"sigmoid"``, ``"tanh"`` or ``"relu"``: how saturation is counted for ``gate``."""
        act = self.gate_act[self.gates.index(gate)]
        return activation if act == "act" else act


LSTM = Cell("lstm", "LSTM", "LSTM", ("i", "f", "g", "o"), ("sigmoid", "sigmoid", "tanh", "sigmoid"),
            ("h", "c"), ("W_i", "W_f", "W_c", "W_o"), chrono=True, layer_norm=True)
GRU = Cell("gru", "GRU", "GRU", ("r", "z", "n"), ("sigmoid", "sigmoid", "tanh"), ("h",), ("W_r", "W_z", "W_n"))
RNN = Cell("rnn", "SimpleRNN", "RNN", ("h",), ("act",), ("h",), ("W_h",), activations=("tanh", "relu"))

CELLS: dict[str, Cell] = {c.name: c for c in (LSTM, GRU, RNN)}
BY_LAYER: dict[str, Cell] = {c.layer: c for c in CELLS.values()}
BY_TORCH: dict[str, Cell] = {c.torch_name: c for c in CELLS.values()}
GATES: dict[str, tuple[str, ...]] = {c.name: c.gates for c in CELLS.values()}


def get(name: str | Cell) -> Cell:
    """The cell for a kind name (``"lstm"``), a layer name (``"LSTM"``) or a Cell."""
    if isinstance(name, Cell):
        return name
    cell = CELLS.get(name) or BY_LAYER.get(name) or BY_TORCH.get(name)
    if cell is None:
        raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {name!r}")
    return cell


def supporting(feature: str) -> tuple[str, ...]:
    """Layer names of the cells that support ``feature`` (``"chrono"`` or ``"layer_norm"``), for messages."""
    return tuple(c.layer for c in CELLS.values() if getattr(c, feature))


def saturation_thresholds() -> tuple[float, float, float]:
    """``(sigmoid_low, sigmoid_high, tanh_limit)``, in the order the C++ kernels take them."""
    return SIGMOID_LOW, SIGMOID_HIGH, TANH_LIMIT
