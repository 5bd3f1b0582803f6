"""Data-parallel training with ``torch.distributed`` (``torchrun``): sharding, gradient sync, reductions.

``torchrun --nproc_per_node N -m lstmlab train CONFIG.toml --run-dir DIR`` starts N copies of
``lstmlab train``; each finds ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (and ``MASTER_ADDR`` /
``MASTER_PORT``) in its environment and joins one process group: gloo on CPU, NCCL for CUDA
tensors when ``[train] device = "cuda"`` (each process then uses ``cuda:LOCAL_RANK``).

What the ranks share and what they split:

* Every rank loads the same data and builds the same model from the same seed; rank 0's weights
  are broadcast once so the replicas start identical (and rank 0's checkpoint on ``--resume``).
* Each epoch's shuffled order comes from a generator seeded with ``(seed, epoch)``, so it is the
  same on every rank (and after a resume).  The order is cut into *global* batches of
  ``batch_size * world_size`` samples; rank ``r`` takes the ``r``-th of ``world_size`` near-equal
  slices of each (``torch.tensor_split``), the DistributedSampler pattern without padding.
  ``[train] batch_size`` is therefore the per-rank batch; the global batch is
  ``batch_size * world_size``.
* Gradients are all-reduced by hand after each backward pass (no ``DistributedDataParallel``
  wrapper): rank ``r`` contributes its gradient times ``w_r / sum(w)``, where ``w_r`` is the
  normaliser of its loss (its number of samples, or of valid time steps for masked per-step
  losses).  The averaged gradient is the gradient of the loss over the whole global batch, so
  N ranks with per-rank batch ``b`` take the same steps as 1 process with batch ``N * b`` (up to
  floating-point summation order).  A rank whose slice of the last global batch is empty runs
  one sample with weight 0.
* The gradient taps (per-step ``dL/dh`` and gate saturation) are gathered from all ranks and
  rescaled to the global loss before :class:`~lstmlab.diagnostics.GradientMonitor` reads them,
  so its verdict, NaN checks and actions are global and identical on every rank.
* Epoch metrics are sums reduced over the ranks; validation runs on rank 0 and is broadcast.
* Only rank 0 writes the run directory (checkpoints, metrics, events, reports) and prints.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from .callbacks import Callback
from .layers import RNNLayer
from .training.loop import Strategy

__all__ = ["Context", "from_env", "epoch_order", "global_batches", "shard", "GradientSync", "DataParallel",
           "local_rank"]


def local_rank() -> int:
    """``LOCAL_RANK`` from the environment (0 when not launched by torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    except ValueError:
        return 1


def env_rank() -> int:
    """``RANK`` from the environment (0 when not launched by torchrun)."""
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


@dataclass
class Context:
    """Where this process stands: ``rank`` of ``world`` processes, its device, and whether it
    created the process group (and so must destroy it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def use_device(self, device: str) -> torch.device:
        """Pick the training device: ``"cpu"`` or ``"cuda"`` (``cuda:LOCAL_RANK`` under torchrun)."""
        if device == "cuda":
            if not torch.cuda.is_available():
                raise ValueError('train.device: expected a CUDA device for "cuda", but none is available '
                                 '(use device = "cpu")')
            index = self.local_rank % torch.cuda.device_count()
            torch.cuda.set_device(index)
            self.device = torch.device("cuda", index)
        else:
            self.device = torch.device("cpu")
        return self.device

    # --- collectives (no-ops on one process) ----------------------------------------------------
    def _dev(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def all_sum(self, values: list[float]) -> list[float]:
        """Sum a list of floats over the ranks (float64)."""
        if not self.enabled or not values:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self._dev())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any."""
        if not self.enabled:
            return bool(flag)
        return self.all_sum([1.0 if flag else 0.0])[0] > 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled)."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def agree(self, exc: BaseException | None) -> BaseException | None:
        """Collect the setup errors of all ranks: a rank that failed gets its own exception back, the
        others a ``ValueError`` with the lowest failing rank's message, so no rank is left waiting in
        a collective for one that gave up."""
        if not self.enabled:
            return exc
        allerr = self.gather(None if exc is None else f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc))
        if exc is not None:
            return exc
        for msg in allerr:
            if msg is not None:
                return ValueError(msg)
        return None

    def broadcast_params(self, model: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        if not self.enabled:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t.data, src=0)

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def from_env(timeout_s: float = 1800.0) -> Context:
    """The context of this process: a single-process one unless ``WORLD_SIZE`` > 1, in which case
    the process group is initialised from the environment (torchrun's ``RANK``, ``MASTER_ADDR``,
    ...): gloo for CPU tensors and the object collectives, plus NCCL for CUDA tensors when CUDA is
    available.  The device is chosen later with :meth:`Context.use_device`."""
    world = env_world_size()
    lr = local_rank()
    if world <= 1:
        return Context(0, 1, lr, torch.device("cpu"), False)
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK") if k not in os.environ]
        if missing:
            raise ValueError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with torchrun "
                             "(torchrun --nproc_per_node N -m lstmlab train ...)")
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        owns = True
    return Context(dist.get_rank(), dist.get_world_size(), lr, torch.device("cpu"), owns)


# ---------------------------------------------------------------------------------------------
# the data order
# ---------------------------------------------------------------------------------------------
def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The sample order of ``epoch``: a permutation from a generator seeded with ``(seed, epoch)``
    (the same on every rank and after a resume), or ``arange(n)`` without shuffling."""
    if not shuffle:
        return torch.arange(n)
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**63 - 1))
    return torch.randperm(n, generator=gen)


def global_batches(order: torch.Tensor, batch_size: int, world: int) -> list[torch.Tensor]:
    """``order`` cut into global batches of ``batch_size * world`` samples (the last may be short)."""
    g = batch_size * world
    return [order[i:i + g] for i in range(0, len(order), g)]


def shard(batch: torch.Tensor, rank: int, world: int) -> tuple[torch.Tensor, bool]:
    """Rank ``rank``'s slice of a global batch, and whether it is real (False: an empty slice,
    replaced by the batch's first sample to be run with weight 0)."""
    part = torch.tensor_split(batch, world)[rank] if world > 1 else batch
    if len(part) == 0:
        return batch[:1], False
    return part, True


# ---------------------------------------------------------------------------------------------
# gradient synchronisation
# ---------------------------------------------------------------------------------------------
class GradientSync(Callback):
    """All-reduce the gradients (weighted by each rank's share of the loss) right after backward.

    Put it first among the callbacks of the loop, so every later ``on_backward_end`` (the
    gradient monitor, divergence checks) sees the global gradients, the global loss (``logs["loss"]``
    is replaced) and, on sampled steps, the taps of the whole global batch.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.real = True          # False while this rank runs a weight-0 stand-in sample
        self.last_loss: float | None = None
        self.last_weight: float = 0.0

    def local_weight(self) -> float:
        """The normaliser of this rank's last loss: valid steps for masked per-step outputs, else samples."""
        if not self.real:
            return 0.0
        model = self.model
        shapes = getattr(model, "_output_shapes", None) or []
        shape = shapes[-1] if shapes else None
        if shape is None:
            return 1.0
        lens = getattr(model, "_last_lengths", None)
        if len(shape) == 3 and lens is not None:
            return float(lens.clamp(max=shape[1]).sum())
        return float(shape[0])

    def on_backward_end(self, step, logs=None) -> None:
        if not self.ctx.enabled:
            return
        import torch.distributed as dist

        model = self.model
        w = self.local_weight()
        loss = float((logs or {}).get("loss", float("nan")))
        params = [p for p in model.parameters() if p.requires_grad]
        by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
        for p in params:
            by_dtype.setdefault(p.dtype, []).append(p)
        stats = torch.tensor([w * loss if w > 0 else 0.0, w], dtype=torch.float64, device=self.ctx._dev())
        dist.all_reduce(stats)
        total = float(stats[1])
        scale = w / total if total > 0 else 0.0
        for ps in by_dtype.values():
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in ps])
            flat = flat * scale
            dist.all_reduce(flat)
            off = 0
            for p in ps:
                k = p.numel()
                g = flat[off:off + k].view_as(p)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
                off += k
        global_loss = float(stats[0]) / total if total > 0 else float("nan")
        self.last_loss, self.last_weight = global_loss, total
        if logs is not None:
            logs["loss"] = global_loss
        self._gather_taps(scale)

    def _gather_taps(self, scale: float) -> None:
        """Replace each recurrent layer's taps by those of the whole global batch (gradients rescaled
        from this rank's loss to the global loss; weight-0 stand-in samples left out)."""
        rnns = [m for m in self.model.modules() if isinstance(m, RNNLayer)]
        mine = []
        for r in rnns:
            entry = {}
            for key, taps in (getattr(r, "last_taps", None) or {}).items():
                if taps is None:
                    continue
                taps.finalize()
                lens = getattr(r, "_last_lengths", None)
                keep = self.real

                def cut(t, sq=False, keep=keep):
                    if t is None:
                        return None
                    t = t.detach().to("cpu", torch.float64)
                    t = t * (scale * scale) if sq else t
                    return t if keep else t[:, :0]

                entry[key] = {"units": taps.units, "filled_backward": taps.filled_backward,
                              "grad_h_sq": cut(taps.grad_h_sq, True), "grad_c_sq": cut(taps.grad_c_sq, True),
                              "saturated": {g: cut(s) for g, s in taps.saturated.items()},
                              "lengths": None if lens is None else (lens.detach().cpu() if keep else lens[:0].cpu()),
                              "steps": None if taps.grad_h_sq is None else int(taps.grad_h_sq.shape[0])}
            mine.append(entry)
        if not any(mine):
            return  # not a sampled step (the same on every rank: sampling follows global_step)
        everyone = self.ctx.gather(mine)
        for i, r in enumerate(rnns):
            for key, taps in (getattr(r, "last_taps", None) or {}).items():
                parts = [e[i].get(key) for e in everyone if i < len(e) and e[i].get(key) is not None]
                if taps is None or not parts:
                    continue
                dtype = taps.grad_h_sq.dtype if taps.grad_h_sq is not None else torch.float32

                def cat(name, parts=parts, dtype=dtype):
                    ts = [p[name] for p in parts if p[name] is not None]
                    return torch.cat(ts, 1).to(dtype) if ts else None

                taps.grad_h_sq = cat("grad_h_sq")
                taps.grad_c_sq = cat("grad_c_sq")
                taps.saturated = {g: torch.cat([p["saturated"][g] for p in parts], 1).to(torch.float32)
                                  for g in parts[0]["saturated"]}
                steps = parts[0]["steps"]
                if any(p["lengths"] is not None for p in parts) and steps is not None:
                    lens = [p["lengths"] if p["lengths"] is not None
                            else torch.full((p["grad_h_sq"].shape[1] if p["grad_h_sq"] is not None else 0,),
                                            steps, dtype=torch.long) for p in parts]
                    r._last_lengths = torch.cat(lens)
                elif steps is not None:
                    r._last_lengths = None


# ---------------------------------------------------------------------------------------------
# the loop's strategy
# ---------------------------------------------------------------------------------------------
class DataParallel(Strategy):
    """How :class:`lstmlab.training.Loop` runs one rank of a data-parallel job (or, with a
    one-process context, ``lstmlab train`` alone): each epoch's order from ``(seed, epoch)``,
    global batches of ``batch_size * world`` sharded over the ranks, gradients all-reduced
    right after backward (:class:`GradientSync`), the epoch's sums reduced, validation on
    rank 0 and broadcast, a stop on any rank stops all."""

    def __init__(self, ctx: Context, seed: int, shuffle: bool = True) -> None:
        super().__init__(shuffle)
        self.ctx, self.seed = ctx, int(seed)
        self.sync = GradientSync(ctx) if ctx.enabled else None

    def callbacks(self) -> list[Callback]:
        return [self.sync] if self.sync is not None else []

    def batches(self, n: int, epoch: int, batch_size: int) -> list[torch.Tensor]:
        return global_batches(epoch_order(n, self.seed, epoch, self.shuffle), batch_size, self.ctx.world)

    def shard(self, batch: torch.Tensor) -> tuple[torch.Tensor, bool]:
        idx, real = shard(batch, self.ctx.rank, self.ctx.world)
        if self.sync is not None:
            self.sync.real = real
        return idx, real

    def batch_loss(self, step_loss: float, tbptt: int | None) -> float:
        return self.sync.last_loss if self.sync is not None and tbptt is None else step_loss

    def add_loss(self, sums: dict[str, list[float]], step_loss: float, size: float, batch_len: int,
                 tbptt: int | None) -> None:
        if self.sync is not None and tbptt is None:
            # the loss of the whole global batch, counted once (on rank 0)
            glob = float(batch_len) if self.ctx.main else 0.0
            sums["loss"][0] += self.sync.last_loss * glob if glob else 0.0
            sums["loss"][1] += glob
        elif size:
            sums["loss"][0] += step_loss * size
            sums["loss"][1] += size

    def reduce(self, sums: dict[str, list[float]]) -> dict[str, list[float]]:
        keys = list(sums)
        flat = self.ctx.all_sum([v for k in keys for v in sums[k]])
        return {k: [flat[2 * i], flat[2 * i + 1]] for i, k in enumerate(keys)}

    def on_main(self, fn):
        return self.ctx.broadcast(fn() if self.ctx.main else None)

    def any(self, flag: bool) -> bool:
        return self.ctx.any(flag)
