"""`tfflat boolean`: bad input is one line and exit 2; a small run writes the table, summary, figures."""

import json

import pytest


@pytest.mark.parametrize("args,words", [
    (["--bits", "21"], "--bits"),
    (["--bits", "0"], "--bits"),
    (["--samples", "-5"], "--samples"),
    (["--samples", "lots"], "--samples"),
    (["--samples", "1.5"], "--samples"),
    (["--top", "-1"], "--top"),
    (["--min-count", "0"], "--min-count"),
])
def test_bad_input_is_one_line_exit_2(args, words, run_cli, tmp_path):
    code, out, err = run_cli(["boolean", *args, "--out", str(tmp_path / "o")])
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unwritable_out_dir(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_cli(["boolean", "--samples", "10", "--out", str(blocker / "sub")])
    assert code == 2 and "cannot write" in err and len(err.strip().splitlines()) == 1


def test_small_run_json(run_cli, tmp_path):
    out_dir = tmp_path / "b"
    code, out, _ = run_cli(["boolean", "--samples", "3e3", "--bits", "3", "--top", "0", "--min-count", "2",
                            "--out", out_dir, "--json"])
    assert code == 0
    summary = json.loads(out)
    assert summary["samples"] == 3000 and summary["distinct"] >= 10
    assert summary["seconds"] > 0 and summary["samples_per_second"] > 0
    lines = (out_dir / "functions.csv").read_text().splitlines()
    assert lines[0] == "function,count,log10_prior" and len(lines) - 1 == summary["table_rows"]
    assert {lines[1].split(",")[0], lines[2].split(",")[0]} == {"00", "ff"}
    assert all(int(line.split(",")[1]) >= 2 for line in lines[1:])
    assert (out_dir / "boolean.json").is_file() and (out_dir / "prior_rank.png").is_file()
    # a rerun resumes from the finished chunks: same table
    code, out, _ = run_cli(["boolean", "--samples", "3e3", "--bits", "3", "--top", "0", "--min-count", "2",
                            "--out", out_dir, "--json", "--no-figures"])
    assert code == 0 and json.loads(out)["distinct"] == summary["distinct"]
    assert (out_dir / "functions.csv").read_text().splitlines() == lines
