"""Where a study lives: an SQLite file in the run directory, or any SQLAlchemy URL (PostgreSQL) that
workers on many machines share; heartbeats find dead workers and their trials are retried.

The trial ledger (:func:`ledger`) is the one place that decides which trials count towards the
budget: every trial except the ones a worker skipped (a duplicate grid point or a trial over the
budget, both marked ``outcome = "skipped"``) and the ones replaced by a retry (a trial whose worker
died or was interrupted; its number is in the retry's ``retry_history``).
"""

from __future__ import annotations

import inspect
import os
import random
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..run import RunDir

__all__ = ["StorageError", "storage_url", "mask_url", "scrub", "storage_error", "open_storage", "Ledger", "ledger",
           "retry_callback"]


class StorageError(ValueError):
    """The study storage cannot be opened (bad URL, server down, driver missing)."""


def storage_url(storage: str | None, run_dir: Path) -> str:
    """A SQLAlchemy URL: ``None`` -> ``sqlite:///RUN_DIR/study.db``; a plain path -> an SQLite file."""
    if storage is None:
        return f"sqlite:///{RunDir(run_dir).study_db.resolve()}"
    if "://" not in storage:
        return f"sqlite:///{Path(storage).expanduser().resolve()}"
    if storage.startswith("postgres://"):
        storage = "postgresql://" + storage[len("postgres://"):]
    if storage.startswith("postgresql://"):  # no driver named: the one that is installed
        driver = _pg_driver()
        if driver is not None:
            storage = f"postgresql+{driver}://" + storage[len("postgresql://"):]
    return storage


def _pg_driver() -> str | None:
    """``psycopg`` (3, SQLAlchemy 2's default) or ``psycopg2``, whichever is importable."""
    import importlib.util

    for name in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


SECRET_KEYS = re.compile(r"pass|secret|token|key|auth|cred", re.IGNORECASE)
"""Query parameters whose values are hidden: password, sslpassword, passfile, sslkey, token, ..."""


def _userinfo(rest: str) -> tuple[str | None, str]:
    """(``user:password`` or None, what follows its ``@``) of a URL without its ``scheme://``.

    Reads as far as the *last* ``@`` whose user part holds no ``/`` (SQLAlchemy's rule), so an
    unencoded ``@`` inside a password is hidden with the rest of it."""
    i = rest.rfind("@")
    while i >= 0:
        if "/" not in rest[:i].split(":", 1)[0]:
            return rest[:i], rest[i + 1:]
        i = rest.rfind("@", 0, i)
    return None, rest


def _query_items(query: str) -> list[tuple[str, str, str]]:
    """(key, '=', value) of each ``&``-separated query item."""
    return [item.partition("=") for item in query.split("&")]


def mask_url(url: str) -> str:
    """The URL with every secret replaced by ``***``: the password (also with an empty user name,
    percent-encoded or holding ``@``) and the values of query parameters such as ``password``,
    ``sslpassword`` or ``passfile``.  The one function for URLs printed, logged, stored or raised."""
    from urllib.parse import unquote_plus

    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    info, rest = _userinfo(rest)
    if info is not None:
        user, colon, _ = info.partition(":")
        rest = f"{user}{':***' if colon else ''}@{rest}"
    path, q, query = rest.partition("?")
    if q:
        query = "&".join(f"{k}=***" if SECRET_KEYS.search(unquote_plus(k)) else k + eq + v
                         for k, eq, v in _query_items(query))
    return f"{scheme}://{path}{q}{query}"


def _secrets(url: str) -> set[str]:
    """The secret strings of a URL, as written and percent-decoded, and their pieces around ``@``."""
    from urllib.parse import quote, unquote, unquote_plus

    _, _, rest = url.partition("://")
    info, rest = _userinfo(rest)
    raw = [info.partition(":")[2]] if info is not None and ":" in info else []
    raw += [v for k, _, v in _query_items(rest.partition("?")[2]) if SECRET_KEYS.search(unquote_plus(k))]
    forms = {f for r in raw for f in (r, unquote(r), unquote_plus(r))}
    forms |= {piece for f in forms for piece in f.split("@")}
    return {f for form in forms for f in (form, quote(form, safe="")) if f}


def scrub(text: str, url: str) -> str:
    """``text`` (an error message from a driver, a log line) without any of the URL's secrets."""
    text = text.replace(url, mask_url(url))
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def storage_error(url: str, what: str, exc: BaseException) -> StorageError:
    """``--storage <masked URL>: <what>: <first line of exc, secrets removed>``."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StorageError(scrub(f"--storage {mask_url(url)}: {what}{first}", url))


def retry_callback(max_retry: int):
    """optuna's callback that re-queues a trial whose heartbeat stopped (name varies by version)."""
    from optuna import storages

    cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning
        return cls(max_retry=max_retry)


def open_storage(url: str, heartbeat_interval: int = 10, grace_period: int | None = None,
                 max_retry: int = 3):
    """An optuna ``RDBStorage`` with heartbeats and retries of trials whose worker died."""
    try:
        import optuna
        from optuna.storages import RDBStorage
    except ImportError:
        raise StorageError("lstmlab tune needs optuna: pip install optuna") from None
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
        Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    else:
        engine_kwargs["pool_pre_ping"] = True
    params = inspect.signature(RDBStorage.__init__).parameters
    cb_name = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params \
        else "failed_trial_callback"
    try:
        for attempt in range(4):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    warnings.simplefilter("ignore", FutureWarning)
                    return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                                      grace_period=grace_period, **{cb_name: retry_callback(max_retry)})
            except ImportError:
                raise
            except Exception:  # noqa: BLE001 - e.g. workers racing to create the tables of a new database
                if attempt == 3:
                    raise
                time.sleep(0.3 * 2 ** attempt + random.random() * 0.2)
        raise AssertionError("not reached")
    except ImportError as exc:
        hint = " (pip install 'psycopg[binary]')" if url.startswith("postgres") else ""
        raise storage_error(url, f"the database driver is missing{hint}: ", exc) from None
    except Exception as exc:  # sqlalchemy.exc.*: bad URL, server down, no permission, ...
        raise storage_error(url, "cannot open the study storage: ", exc) from None


# ---------------------------------------------------------------------------------------------
# the ledger: which trials count
# ---------------------------------------------------------------------------------------------
@dataclass
class Ledger:
    """Trials sorted into what counts towards the budget and what does not."""

    counted: list = field(default_factory=list)      # run, running or queued (not skipped/replaced)
    finished: list = field(default_factory=list)     # counted and COMPLETE / PRUNED / FAIL
    running: list = field(default_factory=list)
    waiting: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    replaced: dict = field(default_factory=dict)     # number -> number of its retry

    def counted_before(self, number: int) -> list:
        return [t for t in self.counted if t.number < number]


def replaced_by(trials) -> dict[int, int]:
    """{number of a failed/interrupted trial: number of the trial that retries it}."""
    out: dict[int, int] = {}
    for t in trials:
        for n in t.system_attrs.get("retry_history", []) or []:
            out[int(n)] = t.number if int(n) not in out else max(out[int(n)], t.number)
    return out


def ledger(trials) -> Ledger:
    from optuna.trial import TrialState

    led = Ledger(replaced=replaced_by(trials))
    for t in trials:
        if t.user_attrs.get("outcome") == "skipped":
            led.skipped.append(t)
            continue
        if t.number in led.replaced:
            continue
        led.counted.append(t)
        if t.state.is_finished():
            led.finished.append(t)
        elif t.state == TrialState.RUNNING:
            led.running.append(t)
        elif t.state == TrialState.WAITING:
            led.waiting.append(t)
    return led


def mark_started(trial, worker: str) -> None:
    """First thing in a trial: a heartbeat now (optuna's thread may not have written one yet)
    and the ``started`` attribute that tells :func:`fail_orphans` the trial got going."""
    storage = trial.study._storage
    if getattr(storage, "get_heartbeat_interval", lambda: None)() is not None:
        storage.record_heartbeat(trial._trial_id)
    trial.set_user_attr("started", f"{worker}#{trial.number}")


def fail_orphans(study, after_s: float, max_retry: int) -> int:
    """Fail (and re-queue) running trials whose worker died before the trial's first heartbeat.

    optuna's heartbeat check skips trials that never recorded one, so a worker killed between
    creating a trial and starting it would leave the trial running forever and every other worker
    waiting for it.  A trial counts as orphaned ``after_s`` seconds after it was created.
    Returns how many were failed."""
    import datetime

    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage, n = study._storage, 0
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if str(t.user_attrs.get("started", "")).endswith(f"#{t.number}"):
            continue
        if t.datetime_start is None or (now - t.datetime_start).total_seconds() < after_s:
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                retry_callback(max_retry)(study, storage.get_trial(t._trial_id))
                n += 1
        except UpdateFinishedTrialError:
            pass
    return n


def worker_id() -> str:
    """``host:pid`` of this worker."""
    return f"{os.uname().nodename}:{os.getpid()}"


def check_study(study, signature: dict, name: str) -> None:
    """Store the search signature on a new study; refuse to join a study with another one."""
    attrs = study.user_attrs
    old = attrs.get("lstmlab_tune")
    if old is None:
        study.set_user_attr("lstmlab_tune", signature)
        return
    if old != signature:
        diff = next((k for k in list(old) + list(signature) if old.get(k) != signature.get(k)), "?")
        what = {"space": "search space", "base_sha1": "[data]/[model]/[train]"}.get(diff, f"tune.{diff}")
        raise ConfigError(f"--study {name}: the study was started with a different {what}; use the same "
                          "config on every worker or choose another --study")
