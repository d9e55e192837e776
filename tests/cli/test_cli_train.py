"""`tfflat train` end to end, and its one-line errors (exit 2, no traceback)."""

import json
import os
import subprocess
import sys

import pytest

TFFLAT = [sys.executable, "-c", "from tfflat_cli.main import main; main()"]


def test_help_and_version():
    r = subprocess.run(TFFLAT + ["--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "tfflat, version" in r.stdout
    r = subprocess.run(TFFLAT + ["--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout


@pytest.mark.slow
def test_train_json_end_to_end(tmp_path, data_dir):
    out = tmp_path / "a20"
    r = subprocess.run(TFFLAT + ["train", "--dataset", "mnist", "--data-dir", data_dir, "--train-size", "100",
                                 "--attack-size", "20", "--test-size", "200", "--lr", "0.05", "--seed", "0",
                                 "--out", str(out), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["train_accuracy"] == 1.0 and summary["zero_error_epoch"] >= 1
    assert set(summary) >= {"zero_error_epoch", "train_accuracy", "test_accuracy", "run_dir"}
    meta = json.loads((out / "run.json").read_text())
    assert meta["sizes"] == {"S": 100, "A": 20, "E": 200} and (out / "model.keras").is_file()
    assert r.stderr.strip() == ""                     # no TensorFlow start-up noise


def _bad(tmp_path, data_dir):
    unwritable = tmp_path / "ro"
    unwritable.mkdir()
    os.chmod(unwritable, 0o500)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "t10k-images-idx3-ubyte.gz").write_bytes(b"junk")
    (corrupt / "t10k-labels-idx1-ubyte.gz").write_bytes(b"junk")
    base = ["train", "--data-dir", data_dir, "--out", str(tmp_path / "r")]
    return [
        (["train", "--dataset", "svhn", "--out", "x"], "svhn"),
        (base + ["--model", "vgg"], "unknown model"),
        (base + ["--optimizer", "lbfgs"], "lbfgs"),
        (base + ["--attack-size", "-5"], "≥ 0"),
        (base + ["--train-size", "9500", "--attack-size", "400"], "only 10000"),
        (base + ["--opt-arg", "betta=0.1"], "no argument 'betta'"),
        (["train", "--data-dir", str(tmp_path / "nowhere"), "--out", "x"], "not a directory"),
        (["train", "--data-dir", str(corrupt), "--out", "x"], "t10k-images"),
        (["train", "--dataset", "boolean", "--bits", "3", "--train-size", "8", "--test-size", "0",
          "--out", str(unwritable / "sub")], "cannot write"),
    ]


def test_bad_input_is_one_line_exit_2(tmp_path, data_dir, run_cli):
    for args, needle in _bad(tmp_path, data_dir):
        if needle == "cannot write" and os.geteuid() == 0:
            continue                                  # root can write anywhere; covered below
        code, out, err = run_cli(args)
        assert code == 2, (args, err)
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)


def test_unwritable_out_is_one_line(tmp_path, run_cli):
    blocker = tmp_path / "file"
    blocker.write_text("x")                            # a file where a directory should go: fails even as root
    code, _, err = run_cli(["train", "--dataset", "boolean", "--bits", "3", "--train-size", "8",
                            "--test-size", "0", "--out", str(blocker / "run")])
    assert code == 2 and "cannot write" in err and err.count("\n") == 1


def test_cap_exits_1_and_keeps_the_run(tmp_path, run_cli):
    code, _, err = run_cli(["train", "--dataset", "boolean", "--bits", "4", "--train-size", "16", "--test-size", "0",
                            "--max-epochs", "1", "--lr", "1e-9", "--out", str(tmp_path / "r")])
    assert code == 1 and "max-epochs" in err
    assert (tmp_path / "r" / "run.json").is_file() and (tmp_path / "r" / "model.keras").is_file()
