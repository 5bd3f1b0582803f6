"""What each cell kind of :mod:`lstmlab.cells` adds to the GPU engine's shared time loops.

The loops (:mod:`.loops`), the autograd Function (:mod:`.functions`) and the entry points are
written once for every cell.  Where LSTM, GRU and SimpleRNN differ they ask the call's
:class:`Steps` (:func:`of` finds it from the cell-table row): extra buffers, the biases of the
two GEMMs, the carried gradients, the x-side gradients and the final states.  The step kernels
are named after the cell (``lstm_fwd``, ``gru_bwd``, ...; :meth:`Steps.kernel`) and take their
buffers by argument name (see :func:`.loops.launcher`), so a cell brings no launch code.

A new cell kind needs its two kernels in :mod:`.kernels` and, where it differs from the plain
form of :class:`Steps`, a subclass registered in :data:`STEPS`.
"""

from __future__ import annotations

import torch

from ... import cells
from .plan import Plan


def empty(p: Plan, dev: torch.device, *shape: int, acc: bool = False) -> torch.Tensor:
    """An uninitialised buffer in the call's compute dtype (``acc``: its accumulation dtype)."""
    return torch.empty(*shape, device=dev, dtype=p.acc if acc else p.io)


def put(b: dict, name: str, src: torch.Tensor | None, dtype: torch.dtype, mode: str) -> None:
    """Place one input into the buffers according to ``mode`` (see :mod:`.loops`)."""
    if mode == "replay":
        if src is None:
            b[name].zero_()
        else:
            b[name].copy_(src)
    elif src is not None:
        b[name] = src.to(dtype, copy=mode == "build").contiguous()


class Steps:
    """One cell kind on the step kernels.  This base class is the plain form, SimpleRNN's: one state
    ``h``, both biases added to the input projection, the x-side gate gradients equal the h-side ones."""

    def __init__(self, spec: cells.Cell) -> None:
        self.spec = spec

    def kernel(self, k, direction: str):
        """This cell's step kernel for ``direction`` (``"fwd"`` / ``"bwd"``) in kernel module ``k``."""
        return getattr(k, f"{self.spec.name}_{direction}")

    def fwd_buffers(self, p: Plan, dev: torch.device, save: bool) -> dict:
        """Forward buffers beyond the shared ones (gates, hidden states, output, masks)."""
        return {}

    def input_bias(self, b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        """The bias added to the input projection of all steps."""
        return b_ih + b_hh

    def fill_states(self, p: Plan, b: dict, c0: torch.Tensor | None, mode: str) -> None:
        """Place the initial states beyond ``h0`` (which every cell has)."""

    def recurrent(self, b: dict, a: torch.Tensor, wh_t: torch.Tensor, rec: torch.Tensor) -> None:
        """One step's recurrent GEMM ``rec = a @ W_hh^T`` (plus what bias the cell adds inside the step)."""
        torch.mm(a, wh_t, out=rec)

    def final_states(self, p: Plan, s: dict) -> tuple[torch.Tensor, ...]:
        """The states after the last step (each sequence's last valid one), as new tensors."""
        return (s["hs"][:, -1].clone(),)

    def bwd_buffers(self, p: Plan, dev: torch.device) -> dict:
        """Backward buffers beyond the shared ones (the ``h`` carries and its taps partial sums)."""
        return {}

    def carries(self, ghn: torch.Tensor | None, gcn: torch.Tensor | None) -> dict:
        """The gradient carries of the backward loop, from the incoming final-state gradients."""
        return {"dhc": ghn}

    def bwd_results(self, s: dict, b: dict, own) -> dict:
        """Backward results beyond ``dG``, ``dh0`` and the taps sums (``own``: copy out of reused buffers)."""
        return {}

    def x_grads(self, p: Plan, s: dict, b: dict, dG: torch.Tensor, x2: torch.Tensor, needs: tuple[bool, ...],
                db: torch.Tensor | None) -> dict:
        """dx, dW_ih and db_ih from the pre-activation gradients ``dG`` (B*T, G*H); ``db`` is their sum
        over steps (None when no bias needs a gradient)."""
        return {"dx": (dG @ s["wi"]).view(p.batch, p.steps, -1) if needs[0] else None,
                "dw_ih": dG.t() @ x2 if needs[1] else None,
                "db_ih": None if db is None else db.clone()}  # separate tensors for two .grad


class LSTMSteps(Steps):
    """The LSTM adds the cell state ``c``: kept in the accumulation dtype, with its own gradient carry."""

    def fwd_buffers(self, p: Plan, dev: torch.device, save: bool) -> dict:
        return {"cs": empty(p, dev, p.batch, p.steps, p.hidden, acc=True)}

    def fill_states(self, p: Plan, b: dict, c0: torch.Tensor | None, mode: str) -> None:
        put(b, "c0", c0, p.acc, mode)

    def final_states(self, p: Plan, s: dict) -> tuple[torch.Tensor, ...]:
        return super().final_states(p, s) + (s["cs"][:, -1].to(p.io, copy=True),)

    def bwd_buffers(self, p: Plan, dev: torch.device) -> dict:
        return {"pc": torch.empty(p.grid[1], p.steps, p.batch, device=dev, dtype=p.acc)} if p.taps else {}

    def carries(self, ghn: torch.Tensor | None, gcn: torch.Tensor | None) -> dict:
        return {"dhc": ghn, "dc": gcn}

    def bwd_results(self, s: dict, b: dict, own) -> dict:
        return {"dc0": own(b["dc"])}


class GRUSteps(Steps):
    """The GRU's candidate reads ``r * (W_hn h + b_hn)``: ``b_hh`` goes into the recurrent GEMM, and the
    x-side gradient of ``n`` (``dan``, kept in ``hn``) differs from the h-side one."""

    def fwd_buffers(self, p: Plan, dev: torch.device, save: bool) -> dict:
        return {"hn": empty(p, dev, p.batch, p.steps, p.hidden)} if save else {}

    def input_bias(self, b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        return b_ih

    def recurrent(self, b: dict, a: torch.Tensor, wh_t: torch.Tensor, rec: torch.Tensor) -> None:
        torch.addmm(b["bhh"], a, wh_t, out=rec)

    def bwd_results(self, s: dict, b: dict, own) -> dict:
        return {"dan": s["hn"]}

    def x_grads(self, p: Plan, s: dict, b: dict, dG: torch.Tensor, x2: torch.Tensor, needs: tuple[bool, ...],
                db: torch.Tensor | None) -> dict:
        H = p.hidden
        rz, dan = dG[:, : 2 * H], b["dan"].view(p.batch * p.steps, H)
        wi = s["wi"]
        return {"dx": torch.addmm(dan @ wi[2 * H:], rz, wi[: 2 * H]).view(p.batch, p.steps, -1) if needs[0] else None,
                "dw_ih": torch.cat((rz.t() @ x2, dan.t() @ x2)) if needs[1] else None,
                "db_ih": torch.cat((rz.sum(0), dan.sum(0))) if needs[3] else None}


STEPS: dict[str, Steps] = {cells.LSTM.name: LSTMSteps(cells.LSTM), cells.GRU.name: GRUSteps(cells.GRU),
                           cells.RNN.name: Steps(cells.RNN)}


def of(cell: cells.Cell) -> Steps:
    """The :class:`Steps` of a cell-table row."""
    return STEPS[cell.name]
