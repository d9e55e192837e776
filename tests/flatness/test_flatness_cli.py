"""`tfflat sharpness` and `tfflat hessian` on a small run: RUN/flatness.json, --json, one-line errors."""

import json

import pytest


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A Boolean n = 7 run directory (7-40-40-1, |S| = 32), saved at its initialisation (no epochs:
    the commands only need a run, and skipping training keeps the test fast)."""
    from tfflat.training.run import TrainConfig, train_run

    out = tmp_path_factory.mktemp("runs") / "bool"
    train_run(TrainConfig(dataset="boolean", train_size=32, test_size=32, max_epochs=0), out, raise_incomplete=False)
    return out


def test_sharpness_and_hessian_add_to_one_file(run_dir, run_cli):
    code, out, err = run_cli(["sharpness", str(run_dir), "--json"])
    assert code == 0, err
    sgd = json.loads(out)
    assert set(sgd) >= {"sharpness", "log10_sharpness", "loss", "max_loss", "corner_loss"} and not sgd["stored"]
    assert {k: sgd["settings"][k] for k in ("zeta", "batch_size", "lr", "epochs")} == \
        dict(zeta=1e-4, batch_size=16, lr=1e-3, epochs=10)                       # Table 1, Boolean row
    assert sgd["sharpness"] > 0 and sgd["max_loss"] >= sgd["loss"]

    code, out, err = run_cli(["sharpness", str(run_dir), "--method", "lbfgsb", "--zeta", "3e-4", "--json"])
    assert code == 0, err
    lbfgsb = json.loads(out)
    assert lbfgsb["method"] == "lbfgsb" and lbfgsb["settings"]["zeta"] == 3e-4
    assert lbfgsb["max_loss"] > lbfgsb["loss"] and lbfgsb["settings"]["iterations"] <= 10

    code, out, err = run_cli(["hessian", str(run_dir), "--top-k", "5", "--probes", "10", "--json"])
    assert code == 0, err
    hess = json.loads(out)
    assert set(hess) >= {"spectral_norm", "log10_top5_product", "trace", "top_eigenvalues"}
    assert hess["spectral_norm"] >= hess["top_eigenvalues"][0] > 0 and len(hess["top_eigenvalues"]) == 5

    stored = json.loads((run_dir / "flatness.json").read_text())
    assert stored["sharpness"]["sgd"]["sharpness"] == sgd["sharpness"]
    assert stored["sharpness"]["lbfgsb"]["sharpness"] == lbfgsb["sharpness"]
    assert stored["hessian"]["spectral_norm"] == hess["spectral_norm"]
    assert len(stored["sharpness"]["sgd"]["trace"]) == 10
    assert stored["hessian"]["versions"]["tensorflow"] and len(stored["hessian"]["weights_sha1"]) == 40

    # the same request again is answered from the file; --force recomputes the same number
    code, out, _ = run_cli(["sharpness", str(run_dir), "--json"])
    again = json.loads(out)
    assert again["stored"] and again["sharpness"] == sgd["sharpness"]
    code, out, _ = run_cli(["sharpness", str(run_dir), "--json", "--force"])
    forced = json.loads(out)
    assert not forced["stored"] and forced["sharpness"] == pytest.approx(sgd["sharpness"], rel=1e-6)

    code, out, err = run_cli(["sharpness", str(run_dir), "--epochs", "3"])
    assert code == 0 and out.startswith("sharpness ") and "3 epochs" in out and "flatness.json" in out
    code, out, err = run_cli(["hessian", str(run_dir), "--top-k", "5", "--probes", "10"])
    assert code == 0 and "spectral norm" in out and "(stored result" in out


def test_bad_input_is_one_line_exit_2(run_dir, tmp_path, run_cli):
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    cases = [
        (["sharpness", str(tmp_path / "missing")], "does not exist"),
        (["hessian", str(tmp_path / "missing")], "does not exist"),
        (["sharpness", str(not_a_run)], "not a tfflat run"),
        (["hessian", str(not_a_run)], "not a tfflat run"),
        (["sharpness", str(run_dir), "--zeta", "0"], "ζ"),
        (["sharpness", str(run_dir), "--zeta", "-1e-4"], "ζ"),
        (["sharpness", str(run_dir), "--method", "lbfgsb", "--zeta", "-1"], "ζ"),
        (["sharpness", str(run_dir), "--epochs", "0"], "epochs"),
        (["sharpness", str(run_dir), "--method", "newton"], "newton"),
        (["hessian", str(run_dir), "--top-k", "100000"], "parameters"),
        (["hessian", str(run_dir), "--top-k", "0"], "top-k"),
        (["sharpness"], "MODEL"),
    ]
    for args, needle in cases:
        code, out, err = run_cli(args)
        assert code == 2, (args, err)
        assert err.startswith("error:") and needle in err and err.count("\n") == 1, (args, err)
        assert "Traceback" not in err and out == ""
