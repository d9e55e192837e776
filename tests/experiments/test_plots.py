"""`tfflat plot`: figures (PNG + PDF) and correlation tables from sweep and temporal records."""

import json

import numpy as np
import pandas as pd
import pytest

from tfflat import runs
from tfflat.experiments import plots, stats


def sweep_records(rng, hessian=False, optimizers=("sgd", "adam")):
    recs = []
    for opt in optimizers:
        for a in (0, 50, 100, 150):
            for seed in range(3):
                r = {"key": f"{opt}/A{a}/seed{seed}/over0", "optimizer": opt, "attack_size": a, "seed": seed,
                     "overtrain": 0, "status": "ok", "dataset": "mnist", "model": "fcn", "train_size": 100,
                     "test_size": 200, "test_accuracy": 0.9 - a / 1000 + 0.01 * rng.normal(),
                     "log10_prior": -100 - a / 10 + rng.normal(), "log10_sharpness": a / 200 + 0.1 * rng.normal()}
                if hessian:
                    r.update(log10_spectral_norm=r["log10_sharpness"] + 1, log10_topk_product=5 * r["log10_sharpness"])
                recs.append(r)
    return recs


def temporal_records(zetas=(1e-4,)):
    recs = []
    for epoch in list(range(0, 60, 10)) + [30]:
        after = epoch > 30 or (epoch == 30 and len([r for r in recs if r["epoch"] == 30]) >= len(zetas))
        for z in zetas:
            recs.append({"key": f"sgd/A0/seed0/epoch{epoch}/zeta{z:g}" + ("/rescaled" if epoch == 30 and after else ""),
                         "optimizer": "sgd", "attack_size": 0, "seed": 0, "epoch": epoch, "zero_error_epoch": 20,
                         "after_rescale": after, "rescale_epoch": 30, "alpha": 5.9, "zeta": z,
                         "train_accuracy": min(1.0, 0.5 + epoch / 40), "test_accuracy": 0.8,
                         "log10_prior": -50.0, "sharpness": 10.0 ** (2 if epoch == 30 and after else 0.1),
                         "log10_sharpness": 2.0 if epoch == 30 and after else 0.1, "function_hash": "ab"})
    return recs


def check_figure_files(paths):
    assert paths and {p.suffix for p in paths} == {".png", ".pdf"}
    for p in paths:
        head = p.read_bytes()[:8]
        assert p.stat().st_size > 2000 and (head.startswith(b"\x89PNG") or head.startswith(b"%PDF"))


def test_sweep_figures_one_per_optimizer(tmp_path, rng):
    paths = plots.sweep_figures(pd.DataFrame(sweep_records(rng, hessian=True)), tmp_path)
    check_figure_files(paths)
    assert sorted(p.name for p in paths) == ["sweep_adam.pdf", "sweep_adam.png", "sweep_sgd.pdf", "sweep_sgd.png"]


def test_temporal_figures(tmp_path):
    paths = plots.temporal_figures(pd.DataFrame(temporal_records(zetas=(1e-3, 1e-4))), tmp_path)
    check_figure_files(paths)
    assert {p.stem for p in paths} == {"temporal_sgd_A0_seed0"}


def test_cli_plot_sweep_writes_figures_and_tables(tmp_path, rng, capsys):
    from tfflat_cli.main import main

    res = tmp_path / "r.jsonl"
    recs = sweep_records(rng, optimizers=("sgd",))
    for r in recs + recs[:2]:               # duplicated keys (e.g. two overlapping shards): first one wins
        runs.append_jsonl(res, r)
    main(["plot", str(res), "--json"])
    summary = json.loads(capsys.readouterr().out)
    out = tmp_path / "r-figures"
    check_figure_files([out / "sweep_sgd.png", out / "sweep_sgd.pdf"])
    assert summary["kind"] == "sweep" and summary["records"] == len(recs)
    table = pd.read_csv(out / "correlations.csv")
    assert set(table.columns) >= {"optimizer", "pair", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p",
                                  "kendall_tau", "kendall_p"}
    expect = stats.correlation_table(pd.DataFrame(recs))
    saved = json.loads((out / "correlations.json").read_text())
    assert [(r["optimizer"], r["pair"]) for r in saved] == [(r["optimizer"], r["pair"]) for r in expect]
    assert [r["pearson_r"] for r in saved] == pytest.approx([r["pearson_r"] for r in expect])
    assert np.allclose(table["kendall_tau"], [r["kendall_tau"] for r in expect])


def test_cli_plot_temporal_summarises_the_rescaling(tmp_path, capsys):
    from tfflat_cli.main import main

    res = tmp_path / "t.jsonl"
    for r in temporal_records():
        runs.append_jsonl(res, r)
    main(["plot", str(res), "--out", str(tmp_path / "figs")])
    out = capsys.readouterr().out
    assert "α=5.9 at epoch 30: sharpness 1.259 → 100" in out
    check_figure_files(sorted((tmp_path / "figs").glob("temporal_sgd*")))
    summary = json.loads((tmp_path / "figs" / "temporal_summary.json").read_text())
    assert summary[0]["zero_error_epoch"] == 20 and summary[0]["log10_prior_before"] == summary[0]["log10_prior_after"]


def test_cli_plot_errors(tmp_path, capsys):
    from tfflat_cli.main import main

    for args, msg in (([str(tmp_path / "none.jsonl")], "does not exist"),
                      ([str(tmp_path)], "without boolean.json")):
        with pytest.raises(SystemExit) as e:
            main(["plot", *args])
        assert e.value.code == 2 and msg in capsys.readouterr().err
