"""Every file tfflat writes: strict JSON (null + reason for non-finite numbers), a format_version, mode 0644,
JSON lines that tolerate only a torn last line, and writes that leave nothing half-done when the disk
is full (issue 12)."""

import errno
import json
import math
import os

import numpy as np
import pytest

from tfflat import runs
from tfflat.errors import UserError
from tfflat.training.run import TrainConfig, train_run


def strict_loads(text):
    def refuse(name):
        raise AssertionError(f"{name} in JSON output")
    return json.loads(text, parse_constant=refuse)


def same(a, b) -> bool:
    """Equal, with NaN equal to NaN."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b and type(a) is type(b)


def test_non_finite_numbers_round_trip_as_null_with_a_reason(tmp_path):
    obj = {"a": math.nan, "b": -math.inf, "c": [1.0, math.inf, [math.nan, 2.0]], "d": {"e": math.inf},
           "f": [{"g": math.nan}], "h": np.float32("inf"), "ok": 1.5, "none": None}
    text = runs.dumps(obj)
    data = strict_loads(text)
    assert data["a"] is None and data["a_nonfinite"] == "nan" and data["b_nonfinite"] == "-inf"
    assert data["c"] == [1.0, None, [None, 2.0]] and data["c_nonfinite"] == {"1": "inf", "2.0": "nan"}
    assert data["d"] == {"e": None, "e_nonfinite": "inf"} and data["f"][0]["g_nonfinite"] == "nan"
    assert data["none"] is None and "none_nonfinite" not in data
    expected = {**obj, "h": math.inf}
    assert same(runs.decode(data), expected)
    runs.write_json(tmp_path / "x.json", obj)
    assert same(runs.read_json(tmp_path / "x.json"), {"format_version": runs.FORMAT_VERSION, **expected})


def test_json_output_is_strict(tmp_path, run_cli):
    """`hessian --probes 0` has no trace (NaN): --json prints null + trace_nonfinite, and flatness.json holds
    the same, read back as NaN."""
    train_run(TrainConfig(dataset="boolean", bits=3, train_size=4, test_size=4, max_epochs=0), tmp_path / "r",
              raise_incomplete=False)
    code, out, err = run_cli(["hessian", tmp_path / "r", "--top-k", "2", "--probes", "0", "--json",
                              "--out", tmp_path / "h.json"])
    assert code == 0, err
    summary = strict_loads(out)
    assert summary["trace"] is None and summary["trace_nonfinite"] == "nan" and summary["trace_stderr"] is None
    stored = strict_loads((tmp_path / "r" / "flatness.json").read_text())
    assert stored["format_version"] == runs.FORMAT_VERSION and stored["hessian"]["trace_nonfinite"] == "nan"
    assert strict_loads((tmp_path / "h.json").read_text())["format_version"] == runs.FORMAT_VERSION
    assert math.isnan(runs.read_json(tmp_path / "r" / "flatness.json")["hessian"]["trace"])
    code, out, _ = run_cli(["hessian", tmp_path / "r", "--top-k", "2", "--probes", "0", "--json"])
    assert strict_loads(out)["stored"] is True and strict_loads(out)["trace_nonfinite"] == "nan"
    for p in (tmp_path / "r" / "run.json", tmp_path / "r" / "model.keras", tmp_path / "r" / "flatness.json",
              tmp_path / "h.json"):
        assert p.stat().st_mode & 0o777 == 0o644, p


@pytest.mark.parametrize("text, needle", [
    ('{"a": 1}', "has no format_version"),
    ('{"format_version": 2, "a": 1}', "newer than this tfflat"),
    ('{"format_version": "1"}', "unknown format_version"),
    ('[{"format_version": 1}]', "holds a list, not an object"),
    ('{"format_version": 1, "a": Infinity}', "Infinity is not JSON"),
    ('{"format_version": 1', "not valid JSON"),
    (b"\x89PNG\r\n\x1a\n", "not a text (JSON) file"),
])
def test_files_we_cannot_read_are_one_line(tmp_path, text, needle):
    p = tmp_path / "f.json"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(UserError, match="f.json") as info:
        runs.read_json(p)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_jsonl_tolerates_only_a_torn_last_line(tmp_path):
    p = tmp_path / "r.jsonl"
    for i in range(3):
        runs.append_jsonl(p, {"a": i, "x": math.nan if i == 1 else 0.5})
    assert p.stat().st_mode & 0o777 == 0o644
    with open(p, "a") as fh:
        fh.write('{"a": 3, "b"')                       # a crash mid-append
    recs = runs.read_jsonl(p)
    assert [r["a"] for r in recs] == [0, 1, 2] and math.isnan(recs[1]["x"])
    runs.append_jsonl(p, {"a": 4})                      # the torn tail is cut off first
    assert [r["a"] for r in runs.read_jsonl(p)] == [0, 1, 2, 4]
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:1] + ["garbage"] + lines[1:]) + "\n")
    with pytest.raises(UserError, match=r"r.jsonl, line 2: not a JSON record"):
        runs.read_jsonl(p)
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(UserError, match="line 2: not a JSON object"):
        runs.read_jsonl(p)
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(UserError, match="not a text"):
        runs.read_jsonl(p)


def _enospc(monkeypatch, where=""):
    """Make fsync of files whose path contains ``where`` fail as on a full disk (after the data was written)."""
    real = os.fsync

    def fsync(fd):
        if where in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    monkeypatch.setattr(os, "fsync", fsync)


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".probe"))


def test_disk_full_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    runs.write_json(tmp_path / "a.json", {"v": 1})
    _enospc(monkeypatch)
    with pytest.raises(UserError, match="No space left on device; free some disk space and rerun"):
        runs.write_json(tmp_path / "a.json", {"v": 2})
    with pytest.raises(UserError, match="No space left"):
        runs.append_jsonl(tmp_path / "r.jsonl", {"v": 2})
    monkeypatch.undo()
    assert runs.read_json(tmp_path / "a.json")["v"] == 1 and _leftovers(tmp_path) == []


def test_short_append_is_undone(tmp_path, monkeypatch):
    p = tmp_path / "r.jsonl"
    runs.append_jsonl(p, {"a": 1})
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, data[: len(data) // 2]))   # disk full mid-line
    with pytest.raises(UserError, match="No space left"):
        runs.append_jsonl(p, {"a": 2, "pad": "x" * 100})
    monkeypatch.undo()
    assert runs.read_jsonl(p) == [{"a": 1}] and p.read_text().endswith("\n")


def test_disk_full_in_a_run_save_leaves_no_model_without_run_json(tmp_path, monkeypatch):
    """run.json is written last and moved into place last: when its write fails, model.keras is not there."""
    _enospc(monkeypatch, "run.json")
    with pytest.raises(UserError, match="run.json: No space left"):
        train_run(TrainConfig(dataset="boolean", bits=3, train_size=4, test_size=4, max_epochs=2), tmp_path / "r",
                  raise_incomplete=False)
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == []


def test_disk_full_while_measuring_keeps_earlier_results(tmp_path, run_cli, monkeypatch):
    """sharpness and prior: disk full when writing their result is one line, exit 2; the run's earlier
    flatness.json / prior.json are intact and no temporary file is left."""
    run = tmp_path / "r"
    train_run(TrainConfig(dataset="boolean", bits=3, train_size=4, test_size=4, max_epochs=3, learning_rate=0.05),
              run, raise_incomplete=False)
    assert run_cli(["hessian", run, "--top-k", "2", "--probes", "0"])[0] == 0
    assert run_cli(["prior", run])[0] == 0
    before = {n: (run / n).read_bytes() for n in ("flatness.json", "prior.json")}
    _enospc(monkeypatch, str(tmp_path))
    for args in (["sharpness", run], ["prior", run, "--likelihood", "probit"], ["hessian", run, "--top-k", "3"]):
        code, _, err = run_cli(args)
        errors = [line for line in err.splitlines() if not line.startswith("warning: ")]     # e.g. unconverged
        assert code == 2 and len(errors) == 1 and "No space left on device" in errors[0], err
    monkeypatch.undo()
    assert {n: (run / n).read_bytes() for n in before} == before and _leftovers(tmp_path) == []


def test_train_with_a_file_size_limit_is_one_line_and_leaves_nothing_half_written(tmp_path):
    """A real failing disk: `tfflat train` in a process whose files may not exceed 40 kB (RLIMIT_FSIZE, the
    kernel's EFBIG): model.keras (31 kB) is written, run.json (250 epochs of history, ~55 kB) cannot be;
    one line, exit 2, no temporary file, and no model.keras without its run.json."""
    import resource
    import signal
    import subprocess
    import sys

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    out = tmp_path / "r"
    r = subprocess.run([sys.executable, "-c", "from tfflat_cli.main import main; main()", "train", "--dataset",
                        "boolean", "--bits", "5", "--train-size", "16", "--test-size", "16", "--max-epochs", "250", "--lr", "1e-4",
                        "--out", str(out)], capture_output=True, text=True, preexec_fn=limit,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 2 and r.stderr.startswith(f"error: cannot write {out / 'run.json'}: File too large"), r.stderr
    assert r.stderr.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == []
