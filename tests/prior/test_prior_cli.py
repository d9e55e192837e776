"""`tfflat prior`: a run (f = true labels on S + predictions on E, cached kernel, RUN/prior.json) and a
kernel file with labels; bad input → one line, exit 2."""

import json
import math

import numpy as np
import pytest


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    from tfflat.training.run import TrainConfig, train_run

    out = tmp_path_factory.mktemp("prior") / "run"
    config = TrainConfig(dataset="mnist", data_dir=data_dir, train_size=40, attack_size=10, test_size=60,
                         max_epochs=500, learning_rate=0.05, seed=1)
    train_run(config, out)
    return out


def test_prior_of_a_run(run_dir, tmp_path, run_cli):
    from tfflat import runs
    from tfflat.prior import function_of_run, log_prior
    from tfflat.prior.kernels import nngp_kernel
    from tfflat.training import predict_logits

    cache = tmp_path / "kernels"
    code, out, err = run_cli(["prior", run_dir, "--json", "--kernel-cache", cache])
    assert code == 0, err
    summary = json.loads(out)
    assert set(summary) >= {"log10_prior", "ln_prior", "pac_bayes_bound", "converged"}
    assert summary["converged"] and summary["ln_prior"] < 0 and summary["n"] == 100
    assert summary["log10_prior"] == pytest.approx(summary["ln_prior"] / math.log(10))
    assert summary["pac_bayes_bound"] == pytest.approx((-summary["ln_prior"] + math.log(20)) / 40)

    # the same number from first principles: true labels on S, the network's labels on E
    run = runs.load(run_dir)
    sp = run.splits
    pred_e = (predict_logits(run.model, sp.x_test) >= 0).astype(int)
    f = np.concatenate([sp.y_train, pred_e])
    _, f_lib, info = function_of_run(run)
    np.testing.assert_array_equal(f_lib, f)
    assert info == {"S": 40, "E": 60, "train_errors": info["train_errors"],
                    "test_accuracy": pytest.approx(np.mean(pred_e == sp.y_test))}
    k = nngp_kernel(np.concatenate([sp.x_train, sp.x_test]), 2, math.sqrt(2), 1.0)
    assert log_prior(k, f)["ln_prior"] == pytest.approx(summary["ln_prior"], rel=1e-9)

    # the GP's own error on E: the EP classifier on S's block, E's test-train block and diagonal
    from tfflat.prior import EPClassifier

    clf = EPClassifier(k[:40, :40]).fit(sp.y_train)
    proba = clf.predict_proba(k[40:, :40], np.diagonal(k)[40:])
    gp_err = float(np.mean((proba[:, 1] > 0.5) != sp.y_test))
    assert summary["gp_test_error"] == pytest.approx(gp_err, abs=1e-12) and 0 < gp_err < 0.5

    stored = runs.read_json(run_dir / "prior.json")
    assert stored["ln_prior"] == summary["ln_prior"] and stored["kernel"]["kind"] == "analytic"
    assert stored["function"]["S"] == 40 and "versions" in stored

    # probit: a second result next to the first; the cached kernel is reused (one file)
    code, out, _ = run_cli(["prior", run_dir, "--likelihood", "probit", "--kernel-cache", cache])
    assert code == 0 and "probit likelihood" in out and "written to" in out
    assert "GP (EP classifier on the same kernel, fitted on S) error on E: " in out and "the network's: " in out
    stored = runs.read_json(run_dir / "prior.json")
    assert set(stored["by_likelihood"]) == {"heaviside", "probit"}
    assert stored["by_likelihood"]["heaviside"]["ln_prior"] == summary["ln_prior"]
    assert len(list(cache.glob("*.npy"))) == 1

    code, _, err = run_cli(["prior", run_dir, "--kernel", "empirical", "--samples", "3", "--json"])
    assert code == 0, err


def test_prior_of_a_kernel_file(tmp_path, rng, run_cli):
    from tfflat.prior import log_prior

    a = rng.standard_normal((30, 40))
    k = a @ a.T / 40 + 0.5
    y = (rng.random(30) < 0.5).astype(int)
    np.save(tmp_path / "k.npy", k)
    np.save(tmp_path / "y.npy", y)
    np.savetxt(tmp_path / "y.txt", y, fmt="%d")
    code, out, err = run_cli(["prior", "--kernel-file", tmp_path / "k.npy", "--labels", tmp_path / "y.npy",
                              "--likelihood", "probit", "--train-size", 20, "--json"])
    assert code == 0, err
    summary = json.loads(out)
    ref = log_prior(k, y, "probit", train_size=20)
    assert summary["ln_prior"] == pytest.approx(ref["ln_prior"], rel=1e-12)
    assert summary["pac_bayes_bound"] == pytest.approx(ref["pac_bayes_bound"])
    code, out, _ = run_cli(["prior", "--kernel-file", tmp_path / "k.npy", "--labels", tmp_path / "y.txt"])
    assert code == 0 and out.startswith("log10 P(f) = ")


def test_a_zero_prior_says_why_and_unconverged_ep_is_allowed_on_request(tmp_path, rng, run_cli):
    # a rank-2 kernel and labels no w in R² realises (the exact wedge angle is 0; tests/prior/test_ep.py)
    lmat = np.random.default_rng(12).standard_normal((10, 2))
    np.save(tmp_path / "k.npy", lmat @ lmat.T)
    np.save(tmp_path / "y.npy", np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 0]))
    code, out, err = run_cli(["prior", "--kernel-file", tmp_path / "k.npy", "--labels", tmp_path / "y.npy"])
    assert code == 0, err
    assert "ln P(f) = -inf" in out and "P(f) = 0: " in out and "P(f) = 0 exactly" in out, out

    a = rng.standard_normal((40, 60))
    np.save(tmp_path / "k2.npy", a @ a.T / 60)
    np.save(tmp_path / "y2.npy", (rng.random(40) < 0.5).astype(int))
    args = ["prior", "--kernel-file", tmp_path / "k2.npy", "--labels", tmp_path / "y2.npy", "--max-sweeps", "1"]
    code, _, err = run_cli(args)
    assert code == 2 and "not converged" in err, err
    code, out, err = run_cli([*args, "--allow-unconverged", "--json"])
    assert code == 0, err
    summary = json.loads(out)
    assert summary["converged"] is False and summary["sweeps"] == 1 and "not converged" in summary["message"]


def test_bad_input_is_one_line_exit_2(tmp_path, run_cli):
    good = np.array([[2.0, 1.0, 0.5], [1.0, 2.0, 1.0], [0.5, 1.0, 2.0]])
    files = {
        "k.npy": good, "y.npy": np.array([0, 1, 1]), "y2.npy": np.array([0, 1]), "y3.npy": np.array([0, 2, 1]),
        "asym.npy": good + np.triu(np.full((3, 3), 0.3), 1),
        "nonpsd.npy": np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]),
        "rect.npy": np.ones((3, 2)),
    }
    for name, arr in files.items():
        np.save(tmp_path / name, arr)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    p = lambda name: str(tmp_path / name)    # noqa: E731
    cases = [
        (["--kernel-file", p("k.npy"), "--labels", p("y2.npy")], "2 labels for a kernel of size 3×3"),
        (["--kernel-file", p("k.npy"), "--labels", p("y3.npy")], "labels must be 0 or 1"),
        (["--kernel-file", p("asym.npy"), "--labels", p("y.npy")], "not symmetric"),
        (["--kernel-file", p("nonpsd.npy"), "--labels", p("y.npy")], "not positive semi-definite"),
        (["--kernel-file", p("rect.npy"), "--labels", p("y.npy")], "square"),
        (["--kernel-file", p("junk.npy"), "--labels", p("y.npy")], "cannot read kernel file"),
        (["--kernel-file", p("none.npy"), "--labels", p("y.npy")], "does not exist"),
        (["--kernel-file", p("k.npy")], "needs --labels"),
        ([], "either MODEL (a run, a .keras file, …) or --kernel-file"),
        ([str(tmp_path)], "not a tfflat run"),
        ([str(tmp_path), "--labels", p("y.npy")], "--labels goes with --kernel-file"),
        (["--kernel-file", p("k.npy"), "--labels", p("y.npy"), "--likelihood", "logit"], "Invalid value"),
    ]
    for args, message in cases:
        code, out, err = run_cli(["prior", *args])
        assert code == 2, (args, out, err)
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, (args, err)


def test_prior_of_a_kernel_file_starts_without_tensorflow(tmp_path):
    """`tfflat prior --kernel-file` is NumPy/SciPy only: the command never imports TensorFlow (start-up
    is most of a small job's time)."""
    import subprocess
    import sys

    np.save(tmp_path / "k.npy", np.eye(4) + 0.5)
    np.save(tmp_path / "y.npy", np.array([0, 1, 1, 0]))
    code = ("import sys; from tfflat_cli.main import main; "
            f"main(['prior', '--kernel-file', {str(tmp_path / 'k.npy')!r}, '--labels', {str(tmp_path / 'y.npy')!r}, "
            "'--json']); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout
    assert '"log10_prior"' in out.stdout
