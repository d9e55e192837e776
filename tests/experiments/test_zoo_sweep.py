"""The flatness zoo in sweeps: the [flatness] config section (and --measures), the fields every record
gains, the measure table (Kendall and granulated τ per optimizer, beside log10 P(f)) and its panels."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfflat import runs
from tfflat.errors import UserError
from tfflat.experiments import config, plots, stats
from tfflat.flatness import MEASURES

ROOT = Path(__file__).resolve().parents[2]
TINY = """\
experiment = "sweep"
[data]
dataset = "mnist"
train_size = 50
test_size = 50
attack_sizes = [0]
[train]
seeds = [0]
[sharpness]
enabled = false
[prior]
enabled = false
"""


def write(tmp_path, text, name="z.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_flatness_section_and_measures_option(tmp_path):
    for fig in ("fig3_mnist_sgd", "fig4_mnist_adam"):            # off by default (cost); --measures turns them on
        assert config.load(ROOT / "configs" / f"{fig}.toml").flatness.measures == ()
        assert config.load(ROOT / "configs" / f"{fig}.toml", measures="all").flatness.measures == tuple(MEASURES)
    p = write(tmp_path, TINY + '[flatness]\nmeasures = ["path_norm", "fisher_rao_norm"]\n'
                               'settings = { keskar_sharpness = { epochs = 3 } }\n')
    exp = config.load(p)
    assert exp.flatness.measures == ("path_norm", "fisher_rao_norm")
    assert config.load(p, measures="none").flatness.measures == ()
    assert config.load(p, measures="hessian_trace,path_norm").flatness.measures == ("hessian_trace", "path_norm")
    assert config.load(write(tmp_path, TINY + '[flatness]\nmeasures = "all"\n')).flatness.measures == tuple(MEASURES)
    # a sidecar written before [flatness] existed matches a config without measures
    old = exp.to_dict()
    old.pop("flatness")
    plain = config.load(write(tmp_path, TINY, "plain.toml"))
    assert config.Experiment.from_dict(old).flatness == plain.flatness
    assert config.Experiment.from_dict(exp.to_dict()).comparable() == exp.comparable() != plain.comparable()
    # [sharpness]'s Table 1 settings reach keskar_sharpness
    assert exp.zoo_defaults()["keskar_sharpness"] == {"zeta": 1e-4, "lr": 1e-3, "epochs": 100, "batch_size": 32,
                                                      "method": "sgd"}


@pytest.mark.parametrize("text, expected", [
    ('[flatness]\nmeasures = ["pathnorm"]\n',
     "[flatness] measures has no measure 'pathnorm'; did you mean 'path_norm'?"),
    ('[flatness]\nmeasures = ["path_norm", "path_norm"]\n', "[flatness] measures has duplicates"),
    ('[flatness]\nmeasures = 3\n', "[flatness] measures must be a list"),
    ('[flatness]\nmeasure = ["path_norm"]\n', "unknown key [flatness] measure; did you mean 'measures'?"),
    ('[flatness]\nmeasures = ["path_norm"]\nsettings = { rho = 0.1 }\n',
     "[flatness] settings — no selected measure has a setting 'rho'"),
    ('[flatness]\nmeasures = ["m_sharpness"]\nsettings = { m_sharpness = { k = 1 } }\n',
     "[flatness] settings — measure m_sharpness has no setting k"),
])
def test_bad_flatness_sections_name_the_key(tmp_path, text, expected):
    with pytest.raises(UserError) as e:
        config.load(write(tmp_path, TINY + text))
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_cli_measures_option_one_line_error(tmp_path, capsys):
    from tfflat_cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["sweep", str(write(tmp_path, TINY)), "--measures", "fisher_rao"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "did you mean 'fisher_rao_norm'" in err and len(err.strip().splitlines()) == 1


def path_norm_by_paths(weights) -> float:
    """φ₂ of a 2-hidden-layer ReLU FCN as the sum over every input→output path and every bias→output
    path of the product of its squared weights (Neyshabur et al. 2015), with einsum."""
    k0, b0, k1, b1, k2, b2 = (np.asarray(w, np.float64) ** 2 for w in weights)
    k2 = k2.ravel()
    total = np.einsum("ij,jk,k->", k0, k1, k2) + np.einsum("j,jk,k->", b0, k1, k2) + b1 @ k2 + b2.sum()
    return math.sqrt(total)


@pytest.mark.slow
def test_session_records_the_zoo(tmp_path, data_dir):
    """Session.measure adds flatness_<name> (+ seconds and scalar details) for [flatness]'s measures;
    a one-point sweep writes them into its record."""
    from tfflat.experiments import sweep
    from tfflat.experiments.session import Session
    from tfflat.flatness import flatness_measures

    exp = config.load(write(tmp_path, TINY + '[flatness]\nmeasures = ["path_norm", "fisher_rao_norm"]\n'),
                      data_dir=data_dir)
    session = Session(exp)
    model = session.model(seed=0)
    fields, sharp = session.measure(model, seed=0)
    assert sharp == [] and fields["flatness_path_norm"] == pytest.approx(path_norm_by_paths(model.get_weights()),
                                                                         rel=1e-5)
    assert fields["flatness_path_norm_squared"] == pytest.approx(fields["flatness_path_norm"] ** 2, rel=1e-6)
    x, y = session.x_se[:session.n_s], session.y_s
    assert fields["flatness_fisher_rao_norm"] == pytest.approx(
        flatness_measures(model, x, y, "fisher_rao_norm")["fisher_rao_norm"]["value"], rel=1e-6)
    assert fields["flatness_fisher_rao_norm_seconds"] >= 0
    assert not any(k.endswith("_settings") or k.endswith("_invariant_layerwise") for k in fields)

    out = tmp_path / "r.jsonl"
    sweep.run(exp, out)
    (rec,) = runs.read_jsonl(out)
    assert rec["status"] == "ok" and rec["flatness_path_norm"] > 0 and rec["flatness_fisher_rao_norm"] > 0


def zoo_records(rng):
    """Sweep records for SGD and Adam (|A| × seed grid) with three measures of the zoo: path_norm
    falls as generalization rises (τ = +1 once oriented), fisher_rao_norm rises with it (τ = −1),
    relative_flatness did not apply in one record."""
    recs = []
    for opt in ("sgd", "adam"):
        for a in (0, 50, 100):
            for seed in range(3):
                acc = 0.9 - 0.002 * a - 0.01 * seed + (0.001 if opt == "adam" else 0)
                r = {"key": f"{opt}/A{a}/seed{seed}/over0", "experiment": "fig3_mnist_sgd", "quick": False,
                     "optimizer": opt, "attack_size": a, "seed": seed, "overtrain": 0, "status": "ok",
                     "dataset": "mnist", "model": "fcn", "train_size": 100, "test_size": 200, "test_accuracy": acc,
                     "log10_prior": -100 + 100 * acc + rng.normal(), "flatness_path_norm": 10.0 - 10 * acc,
                     "flatness_fisher_rao_norm": acc, "flatness_relative_flatness": float(rng.random())}
                if (opt, a, seed) == ("sgd", 50, 1):
                    r.update(flatness_relative_flatness=None, flatness_relative_flatness_error="ends in Conv2D")
                recs.append(r)
    return recs


def test_measure_table_and_panels(tmp_path, rng):
    df = pd.DataFrame(zoo_records(rng))
    rows = {(r["optimizer"], r["measure"]): r for r in stats.measure_table(df)}
    for opt in ("sgd", "adam"):
        assert rows[opt, "path_norm"]["tau"] == pytest.approx(1.0)
        assert rows[opt, "path_norm"]["granulated_tau"] == pytest.approx(1.0)
        assert rows[opt, "fisher_rao_norm"]["tau"] == pytest.approx(-1.0)
        assert rows[opt, "fisher_rao_norm"]["tau_attack_size"] == pytest.approx(-1.0)
        assert rows[opt, "path_norm"]["n"] == 9 and rows[opt, "path_norm"]["sign"] == -1
        assert rows[opt, "log10 P(f)"]["sign"] == 1
    rel = rows["sgd", "relative_flatness"]
    assert rel["n"] == 8 and rel["errors"] == 1 and rel["error"] == "ends in Conv2D"
    assert (rel["expected_layerwise"], rel["expected_neuronwise"]) == (True, False)
    # the granulated τ of a row is Jiang's Ψ over |A| and seed of that optimizer's records
    from tfflat.stats import granulated_kendall

    g = df[df["optimizer"] == "adam"]
    psi = granulated_kendall(-g["flatness_relative_flatness"], 100 * g["test_accuracy"],
                             {"attack_size": g["attack_size"], "seed": g["seed"]})
    assert rows["adam", "relative_flatness"]["granulated_tau"] == pytest.approx(psi["granulated_tau"])

    lines = stats.format_measure_table(list(rows.values()))
    assert "FCN/MNIST, SGD" in lines[0] and "FCN/MNIST, Adam" in lines[0] and "expected" in lines[0]
    path = next(line for line in lines if line.startswith("path_norm"))
    assert path.split()[1:4] == ["+1.000", "/", "+1.000"] and path.split()[-2:] == ["yes", "yes"]
    assert any("did not apply in 1 record(s): ends in Conv2D" in line for line in lines)

    paths = plots.sweep_figures(df, tmp_path)
    assert {"measures_fig3_mnist_sgd_sgd", "measures_fig3_mnist_sgd_adam"} <= {p.stem for p in paths}


def test_cli_plot_prints_the_measure_table(tmp_path, rng, capsys):
    from tfflat_cli.main import main

    sgd, adam = tmp_path / "sgd.jsonl", tmp_path / "adam.jsonl"
    for r in zoo_records(rng):
        runs.append_jsonl(sgd if r["optimizer"] == "sgd" else adam, {**r, "experiment": f"fig_{r['optimizer']}"})
    # with a measured invariance table (as `tfflat flatness RUN --invariance --out` writes it)
    inv = tmp_path / "inv.json"
    runs.write_json(inv, {"invariance": [{"measure": "path_norm", "invariant_layerwise": False,
                                          "invariant_neuronwise": True}]})
    main(["plot", str(sgd), str(adam), "--out", str(tmp_path / "figs"), "--invariance", str(inv)])
    out = capsys.readouterr().out
    assert "α-invariant (measured on a sweep network)" in out and "τ / Ψ" in out
    path = next(line for line in out.splitlines() if line.startswith("path_norm"))
    assert path.split()[-2:] == ["no", "yes"]                                   # the measured answer
    fisher = next(line for line in out.splitlines() if line.startswith("fisher_rao_norm"))
    assert fisher.split()[-3:] == ["yes", "yes", "(expected)"]                  # not measured: the expected one
    saved = json.loads((tmp_path / "figs" / "measures.json").read_text())
    assert {r["measure"] for r in saved} == {"log10 P(f)", "path_norm", "fisher_rao_norm", "relative_flatness"}
    assert [r["measured_layerwise"] for r in saved if r["measure"] == "path_norm"] == [False, False]
    assert set(pd.read_csv(tmp_path / "figs" / "measures.csv").columns) >= {"optimizer", "measure", "tau",
                                                                            "granulated_tau", "expected_layerwise"}
    runs.write_json(inv, {"measures": {}})
    with pytest.raises(SystemExit) as e:
        main(["plot", str(sgd), "--invariance", str(inv)])
    assert e.value.code == 2 and "holds no invariance table" in capsys.readouterr().err


def test_tensorboard_tags_carry_the_zoo_values():
    from tfflat.experiments.tensorboard import tags

    rec = {"log10_prior": -3.0, "flatness_path_norm": 2.0, "flatness_path_norm_seconds": 1.0,
           "flatness_hessian_trace": "inf", "flatness_fisher_rao_norm": None}
    assert tags(rec) == {"log10_prior": -3.0, "flatness_path_norm": 2.0}
