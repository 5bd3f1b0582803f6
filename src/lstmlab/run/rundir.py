"""``RunDir``: the one place that knows the file names of a run directory and writes its files.

A run directory written by ``lstmlab train``::

    config.resolved.toml / .json   the config with every default (and data-derived size) filled in
    data_meta.json                 what the data loader said (kind, classes, scaler, baseline, ...)
    vocab.json                     token list of text data (``lstmlab generate`` finds it here)
    checkpoints/last.lstmlab       weights + optimizer + training state, written atomically each epoch
                                   (and every ``train.checkpoint_every`` steps, mid-epoch)
    checkpoints/best.lstmlab       the best epoch by ``train.checkpoint_monitor``
    checkpoints/state.json         the training state of the last checkpoint (epoch, batch, RNG, ...)
    metrics.jsonl                  one JSON object per epoch
    gradient_health.jsonl          GradientMonitor records and events
    tb/                            TensorBoard events
    model.lstmlab                  the final model
    result.json                    the final JSON line of the run
    report.html                    the self-contained report (``lstmlab report``)
    diagnostics/                   ``lstmlab diagnose RUN_DIR``: gradients.png / .svg, report.json
    .lstmlab-run.json              the marker: this folder is an lstmlab run directory (and of which kind)
    .lstmlab.lock                  the lock: who works in it now (see :mod:`lstmlab.run.lock`)

``lstmlab tune`` adds ``tune.json``, ``study.db``, ``trials/NNNN/`` (one run directory per trial,
with its ``config.toml`` and ``train.log``), ``trials.csv``, ``trials.md``, ``best.toml``,
``best.json`` and figures; ``lstmlab demo`` writes ``results.json``, ``index.html``, one
``NAME.lstmlab`` and ``diagnose_NAME.json`` per model and figures.

Every write goes through :func:`lstmlab.run.files.atomic_write` (JSON lines and logs are appended,
never through a symlink).

A folder becomes a run directory when :meth:`RunDir.claim` creates it (or finds it empty): it
writes the marker and takes the lock.  :meth:`RunDir.check` is the read-only check before that: a
non-empty folder without the marker (a user's folder) is refused, as is a run directory of
another kind, one whose run files are symlinks or not regular files, or one another process holds.
User files are never replaced or deleted: lstmlab removes only its own temporary files.
"""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import files
from .lock import LockBusy, RunLock, describe, holder

__all__ = ["RunDir", "RunDirError"]


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (exists without --resume, config changed, ...)."""


class RunDir:
    """The paths of one run directory and the only writer of its files."""

    CHECKPOINTS = "checkpoints"
    LAST = "last.lstmlab"
    BEST = "best.lstmlab"
    STATE = "state.json"
    CONFIG_JSON = "config.resolved.json"
    CONFIG_TOML = "config.resolved.toml"
    DATA_META = "data_meta.json"
    VOCAB = "vocab.json"
    METRICS = "metrics.jsonl"
    HEALTH = "gradient_health.jsonl"
    EVENTS = "events.jsonl"
    TENSORBOARD = "tb"
    MODEL = "model.lstmlab"
    MODEL_SUFFIX = ".lstmlab"
    RESULT = "result.json"
    DEMO_RESULT = "results.json"
    DEMO_PAGE = "index.html"
    REPORT = "report.html"
    DIAGNOSTICS = "diagnostics"
    DIAGNOSE_JSON = "report.json"
    DIAGNOSE_FIGURES = ("gradients.png", "gradients.svg")
    DIAGNOSE_GLOB = "diagnose*.json"
    TUNE = "tune.json"
    STUDY_DB = "study.db"
    TRIALS = "trials"
    TRIALS_CSV = "trials.csv"
    TRIALS_MD = "trials.md"
    BEST_TOML = "best.toml"
    BEST_JSON = "best.json"
    TRIAL_CONFIG = "config.toml"
    TRAIN_LOG = "train.log"
    TUNE_HISTORY = "history.png"
    TUNE_IMPORTANCE = "importance.png"
    TUNE_HEALTH = "health.png"
    DEMO_FIGURES = ("loss_curves.png", "gradient_flow.png", "gradient_decay.png")
    MARKER = ".lstmlab-run.json"
    LOCK = ".lstmlab.lock"
    KINDS = ("train", "tune", "doctor")
    FOLDERS = (CHECKPOINTS, TENSORBOARD, DIAGNOSTICS, TRIALS)
    FILES = (CONFIG_JSON, CONFIG_TOML, DATA_META, VOCAB, METRICS, HEALTH, EVENTS, MODEL, RESULT, REPORT, TUNE,
             STUDY_DB, TRIALS_CSV, TRIALS_MD, BEST_TOML, BEST_JSON, TRIAL_CONFIG, TRAIN_LOG, TUNE_HISTORY,
             TUNE_IMPORTANCE, TUNE_HEALTH, MARKER, LOCK)
    CHECKPOINT_FILES = (LAST, BEST, STATE)

    def __init__(self, path: str | os.PathLike) -> None:
        self.root = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    # --- paths -----------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """``root / name`` (a figure or another file the caller names through a constant here)."""
        return self.root / name

    @property
    def checkpoints(self) -> Path:
        return self.root / self.CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / self.LAST

    @property
    def best(self) -> Path:
        return self.checkpoints / self.BEST

    @property
    def state(self) -> Path:
        return self.checkpoints / self.STATE

    @property
    def config_json(self) -> Path:
        return self.root / self.CONFIG_JSON

    @property
    def config_toml(self) -> Path:
        return self.root / self.CONFIG_TOML

    @property
    def data_meta(self) -> Path:
        return self.root / self.DATA_META

    @property
    def vocab(self) -> Path:
        return self.root / self.VOCAB

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def health(self) -> Path:
        return self.root / self.HEALTH

    @property
    def events(self) -> Path:
        return self.root / self.EVENTS

    @property
    def tensorboard(self) -> Path:
        return self.root / self.TENSORBOARD

    @property
    def model(self) -> Path:
        return self.root / self.MODEL

    @property
    def result(self) -> Path:
        return self.root / self.RESULT

    @property
    def demo_result(self) -> Path:
        return self.root / self.DEMO_RESULT

    @property
    def report(self) -> Path:
        return self.root / self.REPORT

    @property
    def diagnostics(self) -> Path:
        return self.root / self.DIAGNOSTICS

    @property
    def tune(self) -> Path:
        return self.root / self.TUNE

    @property
    def study_db(self) -> Path:
        return self.root / self.STUDY_DB

    @property
    def trials(self) -> Path:
        return self.root / self.TRIALS

    def trial(self, number: int) -> RunDir:
        """The run directory of trial ``number`` of a study (``trials/NNNN``)."""
        return RunDir(self.trials / f"{int(number):04d}")

    def named_model(self, name: str) -> Path:
        """``NAME.lstmlab`` (the demo keeps one model per name)."""
        return self.root / f"{name}{self.MODEL_SUFFIX}"

    def diagnose_json(self, name: str) -> Path:
        """``diagnose_NAME.json`` (the demo's before/after diagnoses of one model)."""
        return self.root / f"diagnose_{name}.json"

    def model_files(self) -> list[Path]:
        """Every ``*.lstmlab`` file at the top of the run directory, sorted by name."""
        return sorted(self.root.glob(f"*{self.MODEL_SUFFIX}"))

    def diagnose_files(self) -> list[Path]:
        return sorted(self.root.glob(self.DIAGNOSE_GLOB))

    def model_candidates(self) -> tuple[Path, Path, Path]:
        """Where a run keeps a model, in order of preference: final, best, last checkpoint."""
        return self.model, self.best, self.last

    # --- state of the directory ------------------------------------------------------------------
    def has_run(self) -> bool:
        """Whether a training run has checkpointed here (what ``--resume`` continues)."""
        return self.last.exists() or self.state.exists()

    @property
    def marker(self) -> Path:
        return self.root / self.MARKER

    @property
    def lock_file(self) -> Path:
        return self.root / self.LOCK

    def kind(self) -> str | None:
        """The kind of run directory the marker declares (``train``, ``tune``), "?" for an unreadable
        marker, None without one."""
        if not self.marker.is_file():
            return None
        info = files.read_json(self.marker)
        k = info.get("kind") if isinstance(info, dict) else None
        return k if k in self.KINDS else "?"

    def check(self, kind: str) -> None:
        """Read only, before anything is written: can a ``kind`` run use this folder?  It must be
        absent, empty or a run directory of that kind, hold no symlink or special file where a run
        file goes, and not be in use by another process.  Raises :class:`RunDirError` naming it."""
        root = self.root
        if root.is_symlink() and not root.exists():
            raise RunDirError(f"{root}: --run-dir is a symbolic link to nothing ({os.readlink(root)})")
        if not root.exists():
            return
        if not root.is_dir():
            raise RunDirError(f"{root}: --run-dir exists and is not a directory")
        found = self.kind()
        if found is None and any(os.scandir(root)):
            raise RunDirError(f"{root}: not an lstmlab run directory (no {self.MARKER}) and not empty; lstmlab "
                              "does not write into a folder of other files: choose a new or empty --run-dir")
        if found is not None and found != kind:
            what = "an unreadable marker" if found == "?" else f"a {found} run directory"
            raise RunDirError(f"{root}: is {what} ({self.MARKER}), not a {kind} one; choose another --run-dir")
        self._check_entries()
        busy = holder(self.lock_file)
        if busy is not None:
            raise RunDirError(f"{root}: in use by {describe(busy)}; wait for it to end or choose another --run-dir")

    def _check_entries(self) -> None:
        """Every run file present is a regular file (every run folder a folder), and none is a symlink."""
        entries = [(self.root / n, True) for n in self.FOLDERS] + [(self.root / n, False) for n in self.FILES]
        entries += [(p, False) for p in self.root.glob(f"*{self.MODEL_SUFFIX}")]
        entries += [(self.checkpoints / n, False) for n in self.CHECKPOINT_FILES]
        for path, folder in entries:
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISLNK(st.st_mode):
                raise RunDirError(f"{path}: is a symbolic link (to {os.readlink(path)}); lstmlab writes the files "
                                  "of a run directory in place, never through a link: remove it")
            if folder != stat.S_ISDIR(st.st_mode) or not (folder or stat.S_ISREG(st.st_mode)):
                raise RunDirError(f"{path}: expected a {'folder' if folder else 'regular file'}, found "
                                  f"{_what(st.st_mode)}; remove it or choose another --run-dir")

    def create(self, kind: str) -> None:
        """Make this folder a ``kind`` run directory: created if missing, the marker written if absent."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.kind() is None:
            files.atomic_write(self.marker, files.to_json({"lstmlab": "run directory", "kind": kind, "version": 1,
                                                           "created": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                                    time.gmtime())}))

    def claim(self, kind: str) -> RunLock:
        """:meth:`create`, and take the directory's lock for this process; release it with
        ``.release()`` (or ``with``).  Call :meth:`check` first."""
        try:
            self.create(kind)
            return RunLock(self.lock_file).acquire(kind)
        except LockBusy as exc:
            raise RunDirError(f"{self.root}: in use by {describe(exc.holder)}; wait for it to end or choose "
                              "another --run-dir") from None
        except files.WriteError:
            raise
        except OSError as exc:
            raise files.WriteError(self.lock_file if self.root.is_dir() else self.root, exc) from None

    def prepare(self) -> None:
        """Create ``checkpoints/``; remove the temporary files that writes cut short by a crash left
        (only those: names of :func:`lstmlab.run.files.atomic_write`'s own making)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)
        for stale in [*self.root.glob(files.TMP_GLOB), *self.checkpoints.glob(files.TMP_GLOB)]:
            if files.is_temporary(stale.name) and stale.is_file() and not stale.is_symlink():
                stale.unlink(missing_ok=True)

    def reset_logs(self) -> None:
        """Empty ``metrics.jsonl`` and ``gradient_health.jsonl`` for a fresh run."""
        for path in (self.metrics, self.health):
            path.unlink(missing_ok=True)
            files.atomic_write(path, b"")

    # --- writes (static: also for a file the caller names, e.g. ``lstmlab report --out``) ---------
    @staticmethod
    def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
        return files.atomic_write(path, data)

    @staticmethod
    def write_text(path: str | os.PathLike, text: str) -> Path:
        return files.atomic_write(path, text)

    @staticmethod
    def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
        """JSON (non-finite floats as null), atomically."""
        return files.atomic_write(path, files.to_json(obj, indent))

    @staticmethod
    def save_figure(fig, path: str | os.PathLike, **kwargs: Any) -> Path:
        """A matplotlib figure, rendered in memory and written atomically (format from the suffix)."""
        buf = io.BytesIO()
        fig.savefig(buf, format=Path(path).suffix.lstrip(".").lower() or "png", **kwargs)
        return files.atomic_write(path, buf.getvalue())

    @staticmethod
    def append(path: str | os.PathLike, obj: dict) -> None:
        """One JSON line appended to ``metrics.jsonl`` / ``gradient_health.jsonl``."""
        files.append_jsonl(path, obj)

    @staticmethod
    def keep(path: str | os.PathLike, keep: Callable[[dict], bool]) -> None:
        """Drop the JSON lines of ``path`` that ``keep`` rejects (a resume forgets what it re-runs)."""
        files.keep_jsonl(path, keep)

    # --- reads -----------------------------------------------------------------------------------
    @staticmethod
    def read_json(path: str | os.PathLike) -> Any:
        return files.read_json(path)

    @staticmethod
    def read_jsonl(path: str | os.PathLike) -> list[dict]:
        return files.read_jsonl(path)


def _what(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISREG, "a file")):
        if test(mode):
            return name
    return "something else"
