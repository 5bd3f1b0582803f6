"""A database password never leaves ``lstmlab tune`` (issue 12, item 4).

``--storage`` URLs hold secrets in several places: ``user:password@``, an empty user
(``:password@``), an unencoded ``@`` inside the password, percent-encoding, and query parameters
(``password``, ``sslpassword``, ``passfile``, any case or percent-encoded key).  The tests check
:func:`mask_url` on each form, then run ``lstmlab tune`` with each form and look for the secret in
stdout, stderr and every file written in the run directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

optuna = pytest.importorskip("optuna")

from lstmlab import cli  # noqa: E402
from lstmlab.run import RunDir  # noqa: E402
from lstmlab.tune import search  # noqa: E402
from lstmlab.tune.storage import mask_url, open_storage, scrub  # noqa: E402

SECRET = "S3cr3tPw"
FORMS = {  # name: (URL, the secret strings in it, parts that must stay visible)
    "user-password": (f"postgresql://alice:{SECRET}@127.0.0.1:1/lab", [SECRET], ["alice", "127.0.0.1:1/lab"]),
    "empty-user": (f"postgresql://:{SECRET}@127.0.0.1:1/lab", [SECRET], ["127.0.0.1:1/lab"]),
    "query-password": (f"postgresql://alice@127.0.0.1:1/lab?password={SECRET}", [SECRET], ["alice", "/lab"]),
    "sslpassword": (f"postgresql://alice@127.0.0.1:1/lab?sslmode=require&sslpassword={SECRET}", [SECRET],
                    ["sslmode=require"]),
    "passfile": (f"postgresql://alice@127.0.0.1:1/lab?passfile=/home/alice/{SECRET}.pgpass", [SECRET], ["alice"]),
    "upper-case-key": (f"postgresql://alice@127.0.0.1:1/lab?PASSWORD={SECRET}", [SECRET], ["alice"]),
    "encoded-key": (f"postgresql://alice@127.0.0.1:1/lab?pass%77ord={SECRET}", [SECRET], ["alice"]),
    "percent-encoded": ("postgresql://alice:S3%40cr%3At%2Fpw@127.0.0.1:1/lab", ["S3%40cr%3At%2Fpw", "S3@cr:t/pw"],
                        ["alice", "127.0.0.1:1/lab"]),
    "at-sign": ("postgresql://alice:S3cr@3tPw@127.0.0.1:1/lab", ["S3cr@3tPw", "3tPw"], ["alice", "127.0.0.1:1/lab"]),
    "socket-host": (f"postgresql+psycopg://alice@/lab?host=/tmp/pg&password={SECRET}", [SECRET], ["host=/tmp/pg"]),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_mask_url_hides_the_secret_and_keeps_the_rest(form):
    url, secrets, keep = FORMS[form]
    masked = mask_url(url)
    assert "***" in masked
    for s in secrets:
        assert s not in masked, masked
    for part in keep:
        assert part in masked, masked


def test_urls_without_secrets_are_unchanged():
    for url in ("sqlite:////tmp/a@b/study.db", "sqlite:///study.db", "postgresql://alice@host/db?sslmode=require",
                "postgresql://alice@host/db?options=a@b", "/plain/path.db"):
        assert mask_url(url) == url


ALPHABET = st.text(st.sampled_from("abcXYZ019@:/?%#&=+ !$'"), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(secret=ALPHABET, where=st.sampled_from(["userinfo", "empty-user", "query"]))
def test_any_password_is_masked_and_scrubbed_from_driver_messages(secret, where):
    secret = "Zq" + secret  # a prefix that occurs nowhere else in the URL
    written = quote(secret, safe="") if where == "query" else secret
    url = {"userinfo": f"postgresql://alice:{written}@host/db", "empty-user": f"postgresql://:{written}@host/db",
           "query": f"postgresql://alice@host/db?sslmode=require&password={written}"}[where]
    masked = mask_url(url)
    assert secret not in masked and written not in masked and "host" in masked, masked
    for piece in [secret, *secret.split("@")]:
        if len(piece) >= 2:
            message = f"connection to '{piece}@host' failed for {url}"
            assert piece not in scrub(message, url)


# ---------------------------------------------------------------------------------------------
# lstmlab tune: stdout, stderr and every file of the run directory
# ---------------------------------------------------------------------------------------------
CONFIG = """
[data]
source = "adding"
length = 5
n_train = 16
n_val = 8
n_test = 8

[model]
layers = [{type = "LSTM", units = 2}, {type = "Dense"}]

[train]
epochs = 1
batch_size = 8
verbose = 0

[tune]
sampler = "grid"
n_trials = 1
"model.layers.0.units" = {type = "choice", values = [2]}
"""


def leaks(run_dir: Path, texts: list[str], secrets: list[str]) -> list[str]:
    """Where any secret appears: in the given texts or in any file under run_dir (bytes)."""
    found = [f"text {i}" for i, t in enumerate(texts) for s in secrets if s in t]
    for path in run_dir.rglob("*") if run_dir.exists() else []:
        if path.is_file():
            data = path.read_bytes()
            found += [str(path) for s in secrets if s.encode() in data]
    return found


def tune_cli(tmp_path: Path, storage: str, capsys) -> tuple[int, str, str, Path]:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CONFIG)
    run_dir = tmp_path / "run"
    rc = cli.main(["tune", str(cfg), "--run-dir", str(run_dir), "--storage", storage, "--n-trials", "0",
                   "--no-figures"])
    out, err = capsys.readouterr()
    return rc, out, err, run_dir


@pytest.mark.parametrize("form", [f for f in sorted(FORMS) if f not in ("at-sign", "socket-host")])
def test_a_storage_that_cannot_be_opened_names_the_masked_url(tmp_path, capsys, form):
    url, secrets, _ = FORMS[form]
    rc, out, err, run_dir = tune_cli(tmp_path, url, capsys)
    assert rc == 2 and "--storage postgresql" in err and "***" in err, err
    assert leaks(run_dir, [out, err], secrets) == []


@pytest.mark.parametrize("form", sorted(FORMS))
def test_a_study_opened_with_a_secret_url_prints_and_stores_it_masked(tmp_path, capsys, monkeypatch, form):
    """The storage is a local SQLite file standing in for the server (the URL travels as given)."""
    url, secrets, _ = FORMS[form]
    local = f"sqlite:///{tmp_path / 'stand-in.db'}"
    monkeypatch.setattr(search, "open_storage", lambda _url, *a, **k: open_storage(local, *a, **k))
    rc, out, err, run_dir = tune_cli(tmp_path, url, capsys)
    assert rc == 0, err
    assert json.loads((run_dir / "tune.json").read_text())["storage"] == mask_url(search.storage_url(url, run_dir))
    assert "***" in out and leaks(run_dir, [out, err], secrets) == []


@pytest.mark.filterwarnings("ignore:Query string argument")  # pysqlite ignores the password (SAWarning)
def test_a_real_sqlite_study_with_a_query_password(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'run' / 'study.db'}?password={SECRET}"
    rc, out, err, run_dir = tune_cli(tmp_path, url, capsys)
    assert rc == 0, err
    assert leaks(run_dir, [out, err], [SECRET]) == [] and "password=***" in out


def test_a_run_dir_claimed_with_an_unmasked_url_is_refused_without_printing_it(tmp_path, capsys):
    RunDir(tmp_path / "run").create("tune")  # a tune run directory (marked) of another study
    (tmp_path / "run" / "tune.json").write_text(json.dumps({"study": "other", "storage": FORMS["empty-user"][0]}))
    rc, out, err, _ = tune_cli(tmp_path, f"sqlite:///{tmp_path / 'study.db'}", capsys)
    assert rc == 2 and "holds trials of study 'other'" in err and SECRET not in out + err, err
