"""``Bidirectional``: a recurrent layer run forwards and a copy run backwards, outputs merged (Keras)."""

from __future__ import annotations

import torch

from .. import engine as engines
from .base import Layer, check_choice
from .recurrent import RNNLayer
from .registry import deserialize, serialize

# merge_mode -> how the forward and backward outputs combine (None: both, as a list)
MERGES = {"concat": lambda fw, bw: torch.cat([fw, bw], -1), "sum": lambda fw, bw: fw + bw,
          "mul": lambda fw, bw: fw * bw, "ave": lambda fw, bw: (fw + bw) / 2, None: lambda fw, bw: [fw, bw]}


class Bidirectional(Layer):
    """Run a recurrent layer forwards and a copy backwards; merge their outputs (Keras)."""

    def __init__(self, layer: RNNLayer, merge_mode: str | None = "concat",
                 backward_layer: RNNLayer | None = None, name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(layer, RNNLayer):
            raise ValueError(f"layer: expected an LSTM, GRU or SimpleRNN, got {type(layer).__name__}")
        check_choice("merge_mode", merge_mode, tuple(MERGES))
        self.merge_mode = merge_mode
        cfg = layer.get_config()
        self.forward_layer = layer
        if backward_layer is None:
            cfg.update(go_backwards=not layer.go_backwards, name=f"{layer.name}_backward")
            if cfg.get("seed") is not None:
                cfg["seed"] = cfg["seed"] + 1
            backward_layer = type(layer).from_config(cfg)
        self.backward_layer = backward_layer
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self._lazy_done()  # no weights of its own: the two layers are lazy themselves

    def forward(self, x, mask=None, lengths=None, initial_state=None, check_input: bool = True):
        fw_state = bw_state = None
        if initial_state is not None:
            half = len(initial_state) // 2
            fw_state, bw_state = initial_state[:half], initial_state[half:]
        fw = self.forward_layer(x, mask=mask, lengths=lengths, initial_state=fw_state, check_input=check_input)
        bw = self.backward_layer(x, mask=mask, lengths=lengths, initial_state=bw_state,
                                 check_input=check_input)
        fw_states, bw_states = [], []
        if self.return_state:
            fw, *fw_states = fw
            bw, *bw_states = bw
        if self.return_sequences:  # un-reverse the backward layer's output (Keras does the same)
            lens = self.backward_layer._last_lengths
            idx = engines.reverse_index(lens, x.shape[0], x.shape[1], x.device)
            bw = bw.gather(1, idx.unsqueeze(-1).expand(-1, -1, bw.shape[-1]))
        out = MERGES[self.merge_mode](fw, bw)
        if self.return_state:
            return ([out] if not isinstance(out, list) else out) + fw_states + bw_states
        return out

    def compute_mask(self, x, mask):
        return mask if self.return_sequences else None

    def regularization_loss(self):
        terms = [t for t in (self.forward_layer.regularization_loss(),
                             self.backward_layer.regularization_loss()) if t is not None]
        return sum(terms) if terms else None

    def get_config(self) -> dict:
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": serialize(self.forward_layer), "backward_layer": serialize(self.backward_layer)}

    @classmethod
    def from_config(cls, config: dict) -> Bidirectional:
        config = dict(config)
        layer = deserialize(config.pop("layer"))
        backward = deserialize(config.pop("backward_layer"))
        return cls(layer, backward_layer=backward, **config)
