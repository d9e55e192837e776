"""`tfflat plot`: figures (PNG + PDF) and correlation tables from sweep and temporal records."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfflat import runs
from tfflat.experiments import plots, stats


def sweep_records(rng, hessian=False, optimizers=("sgd", "adam"), experiment="fig3_mnist_sgd", dataset="mnist",
                  train_size=100, attack_sizes=(0, 50, 100, 150), overtrain=(0,), trace=True):
    """Records as `tfflat sweep` writes them (keys like ``sgd/A0/seed0/over0``, the same in every
    experiment); every fifth ascent unconverged."""
    recs = []
    for opt in optimizers:
        for a in attack_sizes:
            for seed in range(3):
                for over in overtrain:
                    f = a / max(attack_sizes)
                    r = {"key": f"{opt}/A{a}/seed{seed}/over{over}", "experiment": experiment, "quick": False,
                         "optimizer": opt, "attack_size": a, "seed": seed, "overtrain": over, "status": "ok",
                         "dataset": dataset, "model": "fcn", "train_size": train_size, "test_size": 200,
                         "test_accuracy": 0.9 - 0.3 * f + 0.01 * rng.normal(),
                         "log10_prior": -100 - 30 * f + rng.normal(), "log10_sharpness": f + 0.1 * rng.normal(),
                         "pac_bayes_bound": 1.5 + f, "zeta": 1e-4, "sharpness_converged": len(recs) % 5 != 0}
                    if trace:
                        r.update(sharpness_loss=0.1, ascent_trace=list(0.1 + 0.01 * (1 - np.exp(-np.arange(1, 9) / 2))))
                    if hessian:
                        r.update(log10_spectral_norm=r["log10_sharpness"] + 1, log10_topk_product=5 * r["log10_sharpness"],
                                 hessian_top_k=50)
                    recs.append(r)
    return recs


def temporal_records(zetas=(1e-4,)):
    recs = []
    for epoch in list(range(0, 60, 10)) + [30]:
        after = epoch > 30 or (epoch == 30 and len([r for r in recs if r["epoch"] == 30]) >= len(zetas))
        for z in zetas:
            recs.append({"key": f"sgd/A0/seed0/epoch{epoch}/zeta{z:g}" + ("/rescaled" if epoch == 30 and after else ""),
                         "optimizer": "sgd", "attack_size": 0, "seed": 0, "epoch": epoch, "zero_error_epoch": 20,
                         "after_rescale": after, "rescale_epoch": 30, "alpha": 5.9, "rescale_direction": "inverse",
                         "rescale_layer": 1, "rescale_factor": 1 / 5.9, "zeta": z,
                         "sharpness_converged": epoch != 10, "sharpness_loss": 0.1,
                         "ascent_trace": [0.1 + 0.001 * k for k in range(1, 6)],
                         "train_accuracy": min(1.0, 0.5 + epoch / 40), "test_accuracy": 0.8,
                         "log10_prior": -50.0, "sharpness": 10.0 ** (2 if epoch == 30 and after else 0.1),
                         "log10_sharpness": 2.0 if epoch == 30 and after else 0.1, "function_hash": "ab"})
    return recs


def check_figure_files(paths):
    assert paths and {p.suffix for p in paths} == {".png", ".pdf"}
    for p in paths:
        head = p.read_bytes()[:8]
        assert p.stat().st_size > 2000 and (head.startswith(b"\x89PNG") or head.startswith(b"%PDF"))


def test_sweep_figures(tmp_path, rng):
    """Every sweep figure once: Figs. 3/4 (generalization), S12, S9 (hessian), S10 (ascent
    convergence), eq. (4), the GP's own error, S16–S21 (one grid per flatness measure when several
    overtraining epochs are recorded) and one all-panels figure per overtraining epoch."""
    recs = sweep_records(rng, hessian=True, optimizers=("adam",), overtrain=(0, 20))
    for r in recs:
        r["gp_test_error"] = 1 - r["test_accuracy"] + 0.02
    df = pd.DataFrame(recs)
    paths = plots.sweep_figures(df, tmp_path)
    check_figure_files(paths)
    assert {p.stem for p in paths} == {
        "generalization", "prior_vs_sharpness", "hessian", "ascent_convergence", "pac_bayes", "gp_test_error",
        "overtraining_fig3_mnist_sgd_adam_sharpness", "overtraining_fig3_mnist_sgd_adam_hessian_norm",
        "overtraining_fig3_mnist_sgd_adam_topk_product", "sweep_fig3_mnist_sgd_adam", "sweep_fig3_mnist_sgd_adam_over20"}
    table = stats.correlation_table(df)
    gp = [r for r in table if r["y"] == "gp_test_error_pct"]
    assert len(gp) == 2 and all(r["pearson_r"] == pytest.approx(1.0) for r in gp)   # error + 2 %: r = 1 exactly
    s9 = {r["y"] for r in table if r["x"] == "flatness"}
    assert {"neg_log10_spectral_norm", "neg_log10_topk_product"} <= s9                # S9 (c)/(d)


def test_correlations_count_unconverged_ascents(rng):
    df = pd.DataFrame(sweep_records(rng, optimizers=("sgd",)))
    bad = int((~df["sharpness_converged"]).sum())
    assert bad > 0
    rows = {r["x"] + "|" + r["y"]: r for r in stats.correlation_table(df)}
    assert rows["flatness|generalization"]["unconverged"] == bad
    assert "unconverged" not in rows["log10_prior|generalization"]
    assert any(f"({bad} unconverged)" in line for line in stats.format_table(list(rows.values())))


def test_temporal_figures(tmp_path):
    recs = [{**r, "experiment": "fig5_temporal", "dataset": "mnist", "model": "fcn", "train_size": 100,
             "test_size": 100} for r in temporal_records(zetas=(1e-3, 1e-4))]
    paths = plots.temporal_figures(pd.DataFrame(recs), tmp_path)
    check_figure_files(paths)
    assert {p.stem for p in paths} == {"temporal_fig5_temporal_sgd_A0_seed0", "ascent_convergence_fig5_temporal_sgd_A0_seed0"}


def test_cli_plot_sweep_writes_figures_and_tables(tmp_path, rng, capsys):
    from tfflat_cli.main import main

    res = tmp_path / "r.jsonl"
    recs = sweep_records(rng, optimizers=("sgd",), trace=False)
    for r in recs + recs[:2]:               # duplicated keys (e.g. two overlapping shards): first one wins
        runs.append_jsonl(res, r)
    main(["plot", str(res), "--json"])
    summary = json.loads(capsys.readouterr().out)
    out = tmp_path / "r-figures"
    check_figure_files([out / "sweep_fig3_mnist_sgd_sgd.png", out / "sweep_fig3_mnist_sgd_sgd.pdf"])
    assert summary["kind"] == "sweep" and summary["records"] == len(recs)
    assert summary["records_read"] == len(recs) + 2 and summary["duplicates"] == 2
    table = pd.read_csv(out / "correlations.csv")
    assert set(table.columns) >= {"optimizer", "pair", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p",
                                  "kendall_tau", "kendall_p"}
    expect = stats.correlation_table(pd.DataFrame(recs))
    saved = json.loads((out / "correlations.json").read_text())
    assert list(saved)[:2] == ["format_version", "table"]
    saved = saved["rows"]
    assert {r["experiment"] for r in saved} == {"FCN/MNIST"}
    assert [(r["optimizer"], r["pair"]) for r in saved] == [(r["optimizer"], r["pair"]) for r in expect]
    assert [r["pearson_r"] for r in saved] == pytest.approx([r["pearson_r"] for r in expect])
    assert np.allclose(table["kendall_tau"], [r["kendall_tau"] for r in expect])


def test_cli_plot_two_experiments_keeps_every_record(tmp_path, rng, capsys):
    """Fig. 3's MNIST and CIFAR sweeps share every key (sgd/A0/seed0/over0 …): none is dropped or
    mixed; each experiment is its own column (and correlation rows), and `records` says how many
    were drawn. The same file given twice (or overlapping shards) is merged, not doubled."""
    from tfflat_cli.main import main

    mnist = sweep_records(rng, optimizers=("sgd",), trace=False)
    cifar = sweep_records(rng, optimizers=("sgd",), experiment="fig3_cifar_fcn_sgd", dataset="cifar_cats_cars",
                          train_size=200, attack_sizes=(0, 100, 150, 200), trace=False)
    a, b = tmp_path / "mnist.jsonl", tmp_path / "cifar.jsonl"
    for path, recs in ((a, mnist), (b, cifar)):
        for r in recs:
            runs.append_jsonl(path, r)
    assert {r["key"] for r in mnist} & {r["key"] for r in cifar}
    main(["plot", str(a), str(b), str(a), "--json", "--out", str(tmp_path / "figs")])
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == len(mnist) + len(cifar) == 24
    assert summary["records_read"] == 2 * len(mnist) + len(cifar) and summary["duplicates"] == len(mnist)
    assert [(e["experiment"], e["records"]) for e in summary["experiments"]] == [("FCN/MNIST", 12), ("FCN/CIFAR-10", 12)]
    n = {(r["experiment"], r["x"]): r["n"] for r in summary["correlations"]}
    assert n["FCN/MNIST", "log10_prior"] == 12 and n["FCN/CIFAR-10", "log10_prior"] == 12
    figs = {Path(p).stem for p in summary["figures"]}
    assert {"generalization", "sweep_fig3_mnist_sgd_sgd", "sweep_fig3_cifar_fcn_sgd_sgd"} <= figs


def test_same_name_experiments_stay_apart(tmp_path, rng):
    """Two experiments that would share a label (a config's quick and full runs) get distinct labels."""
    from tfflat.experiments import results

    full = sweep_records(rng, optimizers=("sgd",))
    quick = [{**r, "quick": True, "train_size": 50} for r in sweep_records(rng, optimizers=("sgd",))]
    paths = []
    for name, recs in (("full", full), ("quick", quick)):
        paths.append(tmp_path / f"{name}.jsonl")
        for r in recs:
            runs.append_jsonl(paths[-1], r)
    df = results.load(paths)
    assert len(df) == 24 and df["experiment_id"].nunique() == 2
    labels = stats.label_experiments(df).groupby("experiment_label").size().to_dict()
    assert labels == {"FCN/MNIST (fig3_mnist_sgd)": 12, "FCN/MNIST (fig3_mnist_sgd-quick)": 12}


def test_cli_plot_temporal_summarises_the_rescaling(tmp_path, capsys):
    from tfflat_cli.main import main

    res = tmp_path / "t.jsonl"
    for r in temporal_records():
        runs.append_jsonl(res, r)
    main(["plot", str(res), "--out", str(tmp_path / "figs")])
    out = capsys.readouterr().out
    assert "α=5.9 (W1/α) at epoch 30: sharpness 1.259 → 100" in out
    check_figure_files(sorted((tmp_path / "figs").glob("temporal_t_sgd_A0_seed0.*")))
    summary = json.loads((tmp_path / "figs" / "temporal_summary.json").read_text())
    assert summary["table"] == "temporal_summary" and summary["format_version"] >= 1
    summary = summary["rows"]
    assert summary[0]["zero_error_epoch"] == 20 and summary[0]["log10_prior_before"] == summary[0]["log10_prior_after"]


def test_cli_plot_errors(tmp_path, capsys):
    from tfflat_cli.main import main

    for args, msg in (([str(tmp_path / "none.jsonl")], "does not exist"),
                      ([str(tmp_path)], "without boolean.json")):
        with pytest.raises(SystemExit) as e:
            main(["plot", *args])
        assert e.value.code == 2 and msg in capsys.readouterr().err
