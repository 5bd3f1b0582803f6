"""RunDir and the one atomic writer: unique temporary names, no symlink followed at the target or
the temporary file, nothing left behind on an error; JSON lines appended and cut back."""

from __future__ import annotations

import json
import os

import pytest

from lstmlab.run import RunDir, files


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"
    RunDir.write_json(path, {"x": float("nan"), "y": [1, 2]})
    RunDir.write_json(path, {"x": 1.5})
    assert json.loads(path.read_text()) == {"x": 1.5}
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / RunDir.REPORT).symlink_to(outside)
    RunDir.write_text(RunDir(run).report, "<html>")
    assert outside.read_text() == "keep me"
    assert not (run / RunDir.REPORT).is_symlink() and (run / RunDir.REPORT).read_text() == "<html>"


def test_a_planted_temporary_symlink_is_not_followed(tmp_path, monkeypatch):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (tmp_path / ".r.html.aaaa.tmp").symlink_to(outside)
    names = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(names))
    files.atomic_write(tmp_path / "r.html", "new")
    assert outside.read_text() == "keep me" and (tmp_path / "r.html").read_text() == "new"
    assert not (tmp_path / ".r.html.bbbb.tmp").exists()


def test_an_error_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_text("old")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        files.atomic_write(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_jsonl_append_refuses_a_symlink_and_keep_cuts_back(tmp_path):
    rd = RunDir(tmp_path)
    for epoch in (1, 2, 3):
        rd.append(rd.metrics, {"epoch": epoch, "loss": float("inf")})
    with open(rd.metrics, "a") as fh:
        fh.write('{"epoch": 4, "lo')  # a line cut short by a kill
    assert [r["epoch"] for r in rd.read_jsonl(rd.metrics)] == [1, 2, 3]
    assert rd.read_jsonl(rd.metrics)[0]["loss"] is None
    rd.keep(rd.metrics, lambda r: r["epoch"] <= 2)
    assert [json.loads(line)["epoch"] for line in rd.metrics.read_text().splitlines()] == [1, 2]
    outside = tmp_path / "outside.jsonl"
    outside.write_text("")
    rd.health.symlink_to(outside)
    with pytest.raises(OSError):
        rd.append(rd.health, {"step": 1})
    assert outside.read_text() == ""


def test_prepare_removes_what_a_crash_left_and_knows_a_run(tmp_path):
    rd = RunDir(tmp_path / "run")
    assert not rd.has_run()
    rd.prepare()
    (rd.checkpoints / ".last.lstmlab.1234abcd.tmp").write_bytes(b"half")
    (rd.root / ".metrics.jsonl.99.tmp").write_bytes(b"half")
    rd.write_json(rd.state, {"epoch": 1})
    rd.prepare()
    assert sorted(os.listdir(rd.checkpoints)) == [RunDir.STATE] and rd.has_run()
    assert rd.trial(7).root == rd.root / RunDir.TRIALS / "0007"


def test_the_report_page_is_written_atomically(tmp_path):
    from lstmlab.report import write_report

    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / (RunDir.REPORT + ".tmp")).symlink_to(outside)  # the fixed temporary name of the old writer
    path = write_report(run)
    assert path == RunDir(run).report and path.read_text().startswith("<!DOCTYPE html>")
    assert outside.read_text() == "keep me"
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
