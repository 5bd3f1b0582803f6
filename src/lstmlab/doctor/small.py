"""Small training sets: after the gradient probes, the doctor's answer is an ensemble (recipe R of
``benchmarks/doctor_research/FINDINGS2.md``).

On tens of series the gradient treatment (patching, chrono, standardised series) makes a model that
fits, but one model's test accuracy swings with its initialisation and the few series it saw; the
doctor then trades the rest of the budget for variance:

1. the probe with the recipe's gradient treatments (standardised series, patch, chrono; else the
   winner of the probes), plus the standardised first difference as more channels and
   ``ensemble(4)``: four members, each on its own window slices, predictions averaged over the
   members and six views of a series (:class:`lstmlab.Ensemble`);
2. a fixed training length (about :data:`STEPS` optimizer steps of batch :data:`BATCH`, written as
   epochs) with the *last* weights: choosing epochs on a validation split of a few series is noise
   at this size (FINDINGS2: Spearman 0.16 / 0.51 between out-of-fold and test accuracy);
3. a check run of that config on the training split, scored on the validation split (the
   never-worse rule and the ``val`` of the summary);
4. the answer: the same config on the training *and* validation series (``best.toml``: the data's
   ``val_fraction = 0``), unless the check is clearly below the plain config.

Not used for per-step targets, token inputs, or more than :data:`MAX_SERIES` series (there one
model has the data it needs; the probes' winner trains on as before), nor when the plain config is
healthy and already right on every validation series (:func:`plain_solves`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

from ..config import validate
from ..data.registry import resolve_source
from .candidates import Candidate
from .diagnosis import clearly_better
from .plan import Plan
from .probe import Probe
from .study import Budget, ProbeStudy
from .treatments import apply, treatment

__all__ = ["applies", "plain_solves", "ensemble_stage", "MAX_SERIES", "STEPS", "BATCH", "MEMBERS"]

MAX_SERIES = 300     # training + validation series; FINDINGS2 measured 20-60, and OSULeaf at 200
STEPS = 500          # optimizer steps per member (FINDINGS2: 450-920 in 30 s)
MIN_STEPS = 120      # fewer than this and the members are not trained: keep the probes' winner
BATCH = 64
MEMBERS = 4
PROBE_SHARE = 0.35   # of the budget for the gradient probes when this stage follows


def applies(plan: Plan) -> bool:
    """Continuous series, one class per series, few of them."""
    f = plan.facts
    return (f.sequence_classification and f.continuous and f.input_type == "features"
            and f.n_train + f.n_val <= MAX_SERIES and f.steps >= 8)


def plain_solves(diag, plain: Probe) -> bool:
    """The plain config has healthy gradients, learns, and gets every validation series right: nothing
    for the doctor to fix and nothing a validation split could show an ensemble gaining (BasicMotions:
    plain 1.0 on validation and test; the ensemble, standardising away the amplitude that carries its
    classes, 0.975).  The probes' winner then has to be clearly better, as everywhere else."""
    acc = ((plain.last.val if plain.last else None) or {}).get("accuracy")
    return diag.verdict == "healthy" and bool(diag.learned) and isinstance(acc, (int, float)) and acc >= 0.999


def _whole_split(data: dict) -> dict | None:
    """The data section with the validation series moved into training, or None when the source
    keeps a separate validation file (or has no ``val_fraction``)."""
    d = copy.deepcopy(data)
    if d.get("val_path"):
        return None
    try:
        options = resolve_source(d.get("source", "")).options
    except Exception:  # noqa: BLE001 - an unknown source: keep the split
        return None
    if "val_fraction" not in options:
        return None
    d["val_fraction"] = 0.0
    d.pop("n_val", None)
    return d


def _epochs(n_series: int, steps: int) -> int:
    return max(1, math.ceil(steps / math.ceil(n_series / BATCH)))


def base_probe(probes: list[Probe], winner: Probe) -> Probe:
    """What the ensemble is made of: the probe with the recipe's gradient treatments (standardised
    series, patch, chrono, and a cell change if any) when there is one, else the winner.  FINDINGS2
    validated the recipe on exactly that model; which probe wins on a few validation series is
    noise (readouts and a bidirectional layer on top gained nothing there)."""
    for p in probes:
        kinds = {t.kind for t in p.candidate.treatments}
        if {"series_norm", "patch", "chrono"} <= kinds <= {"series_norm", "patch", "chrono", "cell"}:
            return p
    return winner


def _recipe(plan: Plan, base: Probe) -> tuple[Candidate, dict]:
    """The base probe's treatments + difference + ensemble, trained with a fixed length and last weights."""
    extra = (treatment("difference"), treatment("ensemble", MEMBERS))
    cand = Candidate(base.candidate.treatments + extra,
                     f"few training series ({plan.facts.n_train + plan.facts.n_val}): {MEMBERS} members on window "
                     "slices, predictions averaged over members and views")
    cfg = apply(plan.base, plan.facts, cand.treatments)
    t = cfg["train"]
    t.pop("early_stopping", None)   # the last weights: a fixed length, no selection on a few series
    t["batch_size"] = BATCH
    if all(t.get(k) is None for k in ("clipnorm", "clipvalue", "global_clipnorm")):
        t["clipnorm"] = 1.0
    return cand, cfg


def _seconds_per_step(probe: Probe) -> float:
    s = probe.last
    if s is None or not s.epochs:
        return math.inf
    steps = s.epochs * math.ceil(probe.facts.n_train / max(1, int(probe.cfg["train"].get("batch_size") or 32)))
    return probe.trained_s / max(1, steps)


def ensemble_stage(plan: Plan, ps: ProbeStudy, probes: list[Probe], winner: Probe, plain: Probe, budget: Budget,
                   root, out: Callable, max_steps: int = STEPS, min_steps: int = MIN_STEPS) -> Probe | None:
    """Run steps 1-4 of the module doc; the answer probe, or None when the budget or the check says no
    (the caller then trains the probes' winner on)."""
    f = plan.facts
    base = base_probe(probes, winner)
    cand, cfg = _recipe(plan, base)
    whole = _whole_split(cfg["data"])
    n_all = f.n_train + (f.n_val if whole is not None else 0)
    # one member's step costs about one winner step at batch 64; members x views x crops: ~1.3 x members
    wb = int(base.cfg["train"].get("batch_size") or 32)
    per_step = 1.3 * MEMBERS * _seconds_per_step(base) * math.sqrt(min(f.n_train, BATCH) / min(f.n_train, wb))
    share = f.n_train / (f.n_train + n_all)
    check_s = 0.9 * budget.left() * share
    steps = min(max_steps, int(check_s / per_step)) if math.isfinite(per_step) else max_steps
    if steps < min_steps:
        out(f"small training set: the ensemble needs about {min_steps * per_step / share:.0f} s and "
            f"{budget.left():.0f} s are left; training the probes' winner on instead", flush=True)
        return None
    epochs = _epochs(f.n_train, steps)
    cfg["train"]["epochs"] = epochs
    validate(copy.deepcopy(cfg), plan.config_path)
    check = Probe(len(probes), cand, cfg, root, f, plan.metric, plan.val_batch)
    check.stage = "ensemble"
    probes.append(check)
    ps.open(check)
    out(f"small training set ({f.n_train} + {f.n_val} series): {cand.label}, {epochs} epochs (~{steps} steps of "
        f"{BATCH}), last weights; check on the validation split ...", flush=True)
    check.run(0, check_s * 1.2, epochs=epochs)
    ps.report(check)
    ps.complete(check)
    done = check.epochs_done()
    # the rule is against the plain config: a probe's validation score is that of its best epoch out of
    # hundreds on a few series (a maximum over noise), the check's is that of its last weights
    for p in [plain] if plain.last is not None else []:
        if check.last is None or _clearly_below(check.last.val, p.last.val, f, plan.metric):
            out(f"never worse: the ensemble ({_score(check, plan.metric)}) is clearly below {p.label} "
                f"({_score(p, plan.metric)}) on validation; not used", flush=True)
            check.reason = f"clearly below {p.label} on validation"
            return None
    check.final_epochs = done
    if whole is None:
        out(f"ensemble: {_score(check, plan.metric)}; the data keep a separate validation file, so this run "
            "is the answer", flush=True)
        return check
    epochs_all = _epochs(n_all, steps) if done >= epochs else _epochs_like(done, f.n_train, n_all)
    return _on_all_series(plan, ps, probes, check, whole, epochs_all, root, out)


def _on_all_series(plan: Plan, ps: ProbeStudy, probes: list[Probe], check: Probe, whole: dict, epochs: int, root,
                   out: Callable) -> Probe:
    """Step 4: the checked config on the training and validation series (the answer)."""
    final_cfg = copy.deepcopy(check.cfg)
    final_cfg["data"] = whole
    final_cfg["train"]["epochs"] = epochs
    final_cfg["train"]["checkpoint_monitor"] = "loss"
    validate(copy.deepcopy(final_cfg), plan.config_path)
    final = Probe(len(probes), Candidate(check.candidate.treatments, "the ensemble on the training and validation "
                                         "series"), final_cfg, root, plan.facts, plan.metric, plan.val_batch)
    final.stage = "ensemble"
    probes.append(final)
    ps.open(final)
    n_all = plan.facts.n_train + plan.facts.n_val
    out(f"ensemble: {_score(check, plan.metric)} on validation; training it on all {n_all} series "
        f"({epochs} epochs) ...", flush=True)
    final.run(0, None, epochs=epochs)
    ps.report(final)
    ps.complete(final)
    final.final_epochs = final.epochs_done()
    final.val_probe = check
    return final


def _clearly_below(val: dict | None, rival: dict | None, facts, metric: str) -> bool:
    """The never-worse rule of this stage: on accuracy, the rival ahead by more than the noise of the
    validation split (not by its loss: an ensemble trained to its last weights is confident, and its
    validation loss says little about its accuracy on a few series); on a loss metric, as elsewhere."""
    if not isinstance(val, dict):
        return True
    if metric != "val_accuracy":
        return clearly_better(rival, val, facts, metric)
    a, b = val.get("accuracy"), (rival or {}).get("accuracy")
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return not isinstance(a, (int, float))
    n = max(1, facts.n_val)
    return b - a > max(1.5 / n, 2.0 * math.sqrt(max(a * (1.0 - a), 1.0 / n) / n))


def _epochs_like(epochs: int, n_train: int, n_all: int) -> int:
    """The epochs on ``n_all`` series that make as many steps as ``epochs`` on ``n_train``."""
    return _epochs(n_all, epochs * math.ceil(n_train / BATCH))


def _score(p: Probe, metric: str) -> str:
    name = metric.removeprefix("val_")
    v = ((p.last.val if p.last else None) or {}).get(name)
    return f"{metric} {v:.4g}" if isinstance(v, (int, float)) else f"{metric} -"
