"""``lstmlab.run.train(config, run_dir)``: run a config into a resumable run directory.

The steps: :func:`lstmlab.run.setup.setup` (config -> data -> model, every check before
anything is written), the run directory (rank 0), the training state (fresh or read back from
``checkpoints/last.lstmlab``), the callbacks (gradient monitor, divergence guard, early stopping,
best-model checkpoint, recorder, run checkpoint) around :class:`lstmlab.training.Loop`, and the
final model and metrics.

``--resume`` continues from ``checkpoints/last.lstmlab`` (epoch and batch position, optimizer
state, RNG states, the epoch's running sums): on CPU a run killed at any moment and resumed ends
with bit-identical weights.  Each epoch's sample order comes from ``(seed, epoch)``.  A
non-finite loss stops the run without touching the last good checkpoint.  The result (also the
last line ``lstmlab train`` prints) holds the final validation and test metrics.

Under ``torchrun`` each rank runs this; see :mod:`lstmlab.distributed` (the global batch is
``batch_size * WORLD_SIZE``; only rank 0 writes the run directory).
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import distributed
from ..callbacks import BatchProgress, Callback, EarlyStopping, StopOnDivergence, finite_weights
from ..config import dumps_toml
from ..data.forecast import forecast_metrics
from ..training.loop import Loop, Position
from .checkpoint import (
    STATE_VERSION,
    Parts,
    RunCheckpoint,
    model_bytes,
    rank_seed,
    read_checkpoint,
    seed_everything,
    set_rng_state,
)
from .lock import RunLock
from .recorder import Recorder, open_tensorboard
from .resume import Resume, apply_settings, load_weights
from .rundir import RunDir, RunDirError
from .setup import Setup, check_run, same_checkpoint, setup, tensors

__all__ = ["train", "TrainResult"]


class TrainResult(dict):
    """The final JSON object (also returned by :func:`train`)."""


def train(config: str | os.PathLike | None, run_dir: str | os.PathLike, resume: bool = False,
          out=print, callbacks: Sequence[Callback] = (), progress: bool = False) -> TrainResult:
    """Train the config into ``run_dir`` (see the module doc); return the final metrics.

    ``out`` prints the run's lines; ``callbacks`` run after the run's own ones (so at an epoch's
    end its metrics row and checkpoint are written: a pruner may stop the run there).  ``progress``:
    a per-batch bar on stdout when it is a terminal and ``[train] verbose = 1`` (``lstmlab train``).  Under
    ``torchrun`` (``WORLD_SIZE`` > 1) every rank calls this; see :mod:`lstmlab.distributed`."""
    ctx = distributed.from_env()
    try:
        if ctx.main:
            return _train(ctx, config, RunDir(run_dir), resume, out, list(callbacks), progress)
        with warnings.catch_warnings():  # rank 0 speaks for the job
            warnings.simplefilter("ignore")
            return _train(ctx, config, RunDir(run_dir), resume, lambda *a, **k: None, list(callbacks))
    finally:
        ctx.close()


def _train(ctx, config, rd: RunDir, resume: bool, out, extra: list[Callback], progress: bool = False) -> TrainResult:
    lock: RunLock | None = None
    try:
        try:
            su: Setup | None = setup(ctx, config, rd, resume)
            if ctx.main:
                lock = _claim(rd, su, resume)
            err = None
        except Exception as exc:  # noqa: BLE001 - every rank must learn that one rank gave up
            su, err = None, exc
        err = ctx.agree(err)
        if err is not None:
            raise err
        assert su is not None
        if ctx.main:
            _write_run_files(rd, su)
        state = _initial_state(su.cfg["train"])
        if resume:
            _resume(ctx, rd, su, state)
        else:
            _fresh(ctx, rd, su)
        start = _start(state, su.cfg["train"]["batch_size"] * ctx.world)
        _fit(ctx, rd, su, state, start, resume, out, extra, progress)
        return _finish(ctx, rd, su, state, out)
    finally:
        if lock is not None:
            lock.release()


def _claim(rd: RunDir, su: Setup, resume: bool) -> RunLock:
    """The run directory made (marked) and locked for this process, then checked again under the
    lock: another process may have started or continued a run here since :func:`setup` looked."""
    lock = rd.claim("train")
    try:
        check_run(rd, resume)
        if resume and not same_checkpoint(rd, su.checkpoint_stat):
            raise RunDirError(f"{rd.last}: changed while this run was starting (another lstmlab process "
                              "continued the run); start --resume again")
    except BaseException:
        lock.release()
        raise
    return lock


def _write_run_files(rd: RunDir, su: Setup) -> None:
    """The run directory and what the run is: resolved config, data meta, vocabulary."""
    cfg, meta = su.cfg, su.splits.meta
    rd.prepare()
    rd.write_json(rd.config_json, cfg)
    rd.write_text(rd.config_toml, dumps_toml(cfg, header=f"resolved from {su.config_path} by lstmlab train; "
                                                         "None values omitted"))
    rd.write_json(rd.data_meta, {k: v for k, v in su.splits.meta_dict().items() if k not in ("vocab", "times")})
    vocab = meta.get("vocab")
    if vocab is not None:
        rd.write_json(rd.vocab, {"tokens": list(vocab), "char_level": bool(vocab.char_level),
                                 "kind": meta.get("kind"), "seq_len": meta.get("seq_len"),
                                 "max_len": meta.get("max_len"), "source": meta.get("source")})


def _initial_state(t: dict) -> dict[str, Any]:
    return {"version": STATE_VERSION, "epoch": 0, "global_step": 0, "best": None, "best_epoch": None, "wait": 0,
            "status": "running", "monitor": t["checkpoint_monitor"], "time_s": 0.0, "batch": 0}


def _fresh(ctx, rd: RunDir, su: Setup) -> None:
    ctx.broadcast_params(su.model)
    if ctx.enabled:  # dropout masks differ between ranks; the data order does not
        seed_everything(rank_seed(su.cfg["train"]["seed"], ctx.rank))
    if ctx.main:
        rd.reset_logs()


def _resume(ctx, rd: RunDir, su: Setup, state: dict) -> None:
    """The state of the last checkpoint on every rank: weights, optimizer, the settings the run changed
    (learning rates, clipping), the monitor's rollback snapshot, RNG, step; the logs cut back to what
    that checkpoint had seen."""
    model, t = su.model, su.cfg["train"]
    res: Resume = ctx.broadcast(su.checkpoint)
    if not ctx.main:
        load_weights(model, res, rd.last)
    state.update(res.state)
    state["_rollback"] = res.rollback  # for the monitor, once it has started (RunCheckpoint)
    apply_settings(model, state.get("settings"), res.changed)
    model.global_step = int(state.get("global_step", 0))
    ranks = state.get("rng_ranks")
    if ctx.enabled and isinstance(ranks, list) and len(ranks) == ctx.world:
        set_rng_state(ranks[ctx.rank])
    elif state.get("rng") and ctx.main:
        set_rng_state(state["rng"])
    elif ctx.enabled:  # resumed on another number of ranks: fresh per-rank streams
        seed_everything(rank_seed(t["seed"] + model.global_step, ctx.rank))
    state.pop("rng_ranks", None)
    done, gs = int(state["epoch"]), model.global_step
    if ctx.main:
        rd.keep(rd.metrics, lambda r: _int(r.get("epoch")) <= done)
        rd.keep(rd.health, lambda r: _int(r["step"]) < gs if _is_int(r.get("step")) else _int(r.get("epoch")) <= done)
    if state.get("status") == "diverged":
        state["status"] = "running"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(v) -> int:
    """A row's epoch or step (a row without a readable one counts as 0: it is kept)."""
    return v if _is_int(v) else 0


def _start(state: dict, global_batch: int) -> Position:
    """Where the loop starts; a checkpoint from another global batch size continues approximately."""
    start, batch = int(state["epoch"]), int(state.get("batch") or 0)
    sums = state.get("epoch_sums") if batch else None
    if batch and state.get("global_batch") and int(state["global_batch"]) != global_batch:
        done_samples = batch * int(state["global_batch"])
        batch = done_samples // global_batch  # re-runs at most one global batch's worth of samples
        warnings.warn(f"the checkpoint is {done_samples} samples into epoch {start + 1} with global batches of "
                      f"{state['global_batch']}; now {global_batch} (batch_size x ranks): continuing at batch "
                      f"{batch}, which is not an exact replay", stacklevel=2)
    return Position(start, batch, sums)


def _callbacks(ctx, rd: RunDir, su: Setup, state: dict, strategy, writer, out,
               carry: tuple[float, str | None]) -> tuple[list[Callback], RunCheckpoint]:
    """The callbacks of ``lstmlab train``, in the order their ``on_epoch_end`` must run: the guard
    and the early stopping decide, the best-model checkpoint asks for a save, the recorder writes
    the rows, the run checkpoint writes the state and the checkpoints."""
    t = su.cfg["train"]
    es, monitor = t["early_stopping"], t["checkpoint_monitor"]
    min_delta = 0.0 if es is None else es["min_delta"]
    guard = StopOnDivergence()
    stopper = EarlyStopping(monitor, patience=None if es is None else es["patience"], min_delta=min_delta)
    recorder = Recorder(rd, state, epochs=t["epochs"], monitor_name=monitor, guard=guard, stopper=stopper,
                        writer=writer, out=out, verbose=t.get("verbose", 1), main=ctx.main, carry_s=carry[0],
                        carry_verdict=carry[1])
    keep = RunCheckpoint(state, Parts(rd=rd, ctx=ctx, strategy=strategy, stopper=stopper, guard=guard,
                                      recorder=recorder, monitor=su.monitor, epochs=t["epochs"],
                                      every=t.get("checkpoint_every"), global_batch=t["batch_size"] * ctx.world))
    best = keep.best_checkpoint(monitor, min_delta)
    return [cb for cb in (su.monitor, guard, stopper, best, recorder, keep) if cb is not None], keep


def _fit(ctx, rd: RunDir, su: Setup, state: dict, start: Position, resume: bool, out,
         extra: list[Callback], progress: bool = False) -> None:
    t = su.cfg["train"]
    model = su.model
    if progress and ctx.main and t.get("verbose", 1) == 1:  # the bar is erased before each line the run prints
        bar = BatchProgress()
        out, extra = bar.printer(out), [bar] + extra
    writer = open_tensorboard(rd.tensorboard, purge_step=start.epoch + 1 if resume else None) if ctx.main else None
    if t.get("verbose", 1):
        out(su.splits.summary(), flush=True)
        where = (f"resuming in epoch {start.epoch + 1} after batch {start.batch} (step {model.global_step})"
                 if start.batch else f"resuming after epoch {start.epoch}") if resume else "starting"
        par = f"; {ctx.world} ranks, global batch {t['batch_size'] * ctx.world}" if ctx.enabled else ""
        out(f"model: {sum(p.numel() for p in model.parameters()):,} parameters; run dir {rd.root}; "
            + where + par, flush=True)
    if start.epoch >= t["epochs"] or state.get("status") == "early_stopped":
        if writer is not None:
            writer.close()
            if t.get("verbose", 1):
                out(f"nothing to train: the run already finished after epoch {start.epoch} ({state.get('status')})")
        return
    strategy = distributed.DataParallel(ctx, t["seed"], t["shuffle"])
    carry = (float(state.get("partial_time_s") or 0.0), state.get("epoch_verdict")) if start.batch else (0.0, None)
    cbs, keep = _callbacks(ctx, rd, su, state, strategy, writer, out, carry)
    if not ctx.main:
        start.sums = None  # rank 0 carries the partial epoch's sums; the reduction adds the others' zeros
    try:
        Loop(model, cbs + extra, strategy, tbptt=t["tbptt"], checkpoint=keep).run(
            su.x, su.y, su.lengths, su.val, epochs=t["epochs"], batch_size=t["batch_size"], start=start)
    finally:
        if writer is not None:
            writer.close()


def _result(ctx, rd: RunDir, su: Setup, state: dict) -> TrainResult:
    t = su.cfg["train"]
    status = state.get("status", "completed")
    if status == "running":
        status = state["status"] = "completed" if state["epoch"] >= t["epochs"] else "stopped"
    result = TrainResult({"run_dir": str(rd.root), "status": status, "epochs": state["epoch"],
                          "best_epoch": state.get("best_epoch"), "monitor": t["checkpoint_monitor"],
                          "best": state.get("best"), "val": None, "test": None,
                          "baseline": _baseline(su.splits.meta), "time_s": round(state.get("time_s", 0.0), 2)})
    if status == "diverged":
        result["diverged_epoch"] = state.get("diverged_epoch")
    if ctx.enabled:
        result["world_size"] = ctx.world
    return result


def _finish(ctx, rd: RunDir, su: Setup, state: dict, out=print) -> TrainResult:
    """Rank 0: the final model (last good / best checkpoint when asked), state, metrics, result.  A run
    that diverged before its first checkpoint has no good weights: no model file is written."""
    result = _result(ctx, rd, su, state)
    if not ctx.main:
        ctx.barrier()
        return result
    model, t = su.model, su.cfg["train"]
    good = True
    if result["status"] == "diverged":
        good = rd.last.exists()
        if good:
            model.load_state_dict(read_checkpoint(rd.last)[0])
    elif t["early_stopping"] is not None and t["early_stopping"]["restore_best_weights"] and rd.best.exists():
        model.load_state_dict(read_checkpoint(rd.best)[0])
    good = good and finite_weights(model)
    if good:
        rd.write_bytes(rd.model, model_bytes(model))
    else:
        result["model"] = None
        out(f"no {rd.MODEL} written: the run diverged before its first checkpoint, so it has no good weights",
            file=sys.stderr)
    rd.write_json(rd.state, {k: v for k, v in state.items() if not k.startswith("_")}, indent=None)
    metrics = final_metrics(model, su.splits, t["batch_size"]) if good else {}
    result["val"], result["test"] = metrics.get("val"), metrics.get("test")
    for split in ("val", "test") if t.get("verbose", 1) else ():
        line = forecast_line(split, metrics.get(split))
        if line:
            out(line, flush=True)
    rd.write_json(rd.result, result)
    ctx.barrier()
    return result


def final_metrics(model, splits, batch_size: int) -> dict:
    """Loss and metrics of the final model on the validation and test splits (None when empty);
    bits per character for a language model; for a forecasting set (``meta["forecast"]``) the
    model's errors in the series' own units (transform and scaling undone) next to the
    persistence and seasonal-naive forecasts of the same windows, the MASE and the RMSE of each
    step ahead (``res["forecast"]``, see :func:`lstmlab.data.forecast_metrics`)."""
    meta = splits.meta
    out: dict[str, Any] = {}
    for name in ("val", "test"):
        part = getattr(splits, name)
        if len(part) == 0:
            out[name] = None
            continue
        x, y, lengths = tensors(part)
        res = model.evaluate(x, y, batch_size=batch_size, lengths=lengths, return_dict=True)
        if meta.get("kind") == "language_model":
            res["bits_per_char"] = res["loss"] / math.log(2)
        if meta.get("forecast") is not None:
            fc = forecast_metrics(splits, model.predict(x, batch_size=batch_size, lengths=lengths), name)
            res.update(rmse_original_units=fc["rmse"], mae_original_units=fc["mae"], mase=fc["mase"], forecast=fc)
        elif meta.get("kind") == "regression":
            res.update(_scaled_errors(meta.get("scaler"), model.predict(x, batch_size=batch_size, lengths=lengths),
                                      part.y))
        out[name] = res
    return out


def _scaled_errors(scaler, pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """RMSE and MAE after undoing the target scaling (a regression set that is not a forecast)."""
    if scaler is None or not hasattr(scaler, "inverse_transform") or getattr(scaler, "method", "none") == "none":
        return {}
    pred, true = scaler.inverse_transform(pred), scaler.inverse_transform(y)
    return {"rmse_original_units": float(np.sqrt(np.mean((pred - true) ** 2))),
            "mae_original_units": float(np.mean(np.abs(pred - true)))}


def forecast_line(split: str, res: dict | None) -> str | None:
    """One console line: the model against the naive forecasts on ``split``, in original units."""
    fc = (res or {}).get("forecast")
    if not isinstance(fc, dict):
        return None
    steps = fc.get("per_step_rmse") or []
    per_step = f"; RMSE per step ahead {', '.join(f'{v:.4g}' for v in steps)}" if len(steps) > 1 else ""
    return (f"{split} forecast ({fc['windows']} windows, transform {fc['transform']}, original units): "
            f"RMSE {fc['rmse']:.4g}, MAE {fc['mae']:.4g}, MASE {fc['mase']:.3g}; persistence RMSE "
            f"{fc['persistence_rmse']:.4g}, seasonal-naive (m={fc['seasonal_period']}) RMSE "
            f"{fc['seasonal_naive_rmse']:.4g}{per_step}")


def _baseline(meta: dict) -> dict | None:
    b = meta.get("baseline")
    if not isinstance(b, dict):
        return None
    b = {k: v for k, v in b.items() if isinstance(v, (int, float, str)) and k != "note"}
    if "persistence_test_mse" in b:
        b["persistence_test_rmse"] = math.sqrt(b["persistence_test_mse"])
    return b or None
