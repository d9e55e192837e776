"""Experiment configs: defaults, --quick, data paths, and one-line errors (exit 2) before any work."""

from pathlib import Path

import pytest

from tfflat.errors import UserError
from tfflat.experiments import config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))

TINY = """\
experiment = "sweep"
[data]
dataset = "mnist"
train_size = 50
test_size = 50
attack_sizes = [0, 25]
[train]
seeds = [0, 1]
"""


def write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_are_the_papers(tmp_path):
    exp = config.load(write(tmp_path, 'experiment = "sweep"\n[data]\ndataset = "mnist"\n'))
    assert exp.kind == "sweep" and exp.name == "c"
    assert (exp.data.train_size, exp.data.test_size) == (500, 1000)
    assert list(exp.data.attack_sizes) == list(range(0, 501, 50))
    assert list(exp.train.seeds) == [0, 1, 2, 3, 4] and list(exp.train.optimizers) == ["sgd"]
    assert list(exp.sharpness.zeta) == [1e-4] and exp.sharpness.epochs == 100      # Table 1, MNIST/FCN
    # the library's default (tfflat.prior.log_prior): the Heaviside P(f) of the paper's definition;
    # every paper-figure config states "probit", what the published figures computed (SPEC §5)
    assert exp.prior.likelihood == "heaviside" and exp.temporal is None


def test_cifar_defaults_follow_table1(tmp_path):
    exp = config.load(write(tmp_path, 'experiment = "sweep"\n[data]\ndataset = "cifar_cats_cars"\n'
                                      '[model]\nname = "resnet50"\n'))
    assert list(exp.sharpness.zeta) == [1e-5] and exp.sharpness.lr == 100.0


def test_quick_overrides_and_roundtrip(tmp_path):
    p = write(tmp_path, TINY + '[quick]\ndata = { attack_sizes = [0] }\ntrain = { seeds = [3] }\n')
    full, quick = config.load(p), config.load(p, quick=True)
    assert list(full.data.attack_sizes) == [0, 25] and list(quick.data.attack_sizes) == [0]
    assert list(quick.train.seeds) == [3] and quick.quick
    assert config.Experiment.from_dict(quick.to_dict()).comparable() == quick.comparable()
    assert full.comparable() != quick.comparable()


def test_data_dir_relative_to_config_and_overridden(tmp_path):
    (tmp_path / "sub").mkdir()
    p = write(tmp_path / "sub", TINY.replace('dataset = "mnist"', 'dataset = "mnist"\ndata_dir = "../data"'))
    assert config.load(p).data.data_dir == str((tmp_path / "data").resolve())
    assert config.load(p, data_dir=str(tmp_path)).data.data_dir == str(tmp_path.resolve())


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_are_valid(path):
    for quick in (False, True):
        exp = config.load(path, quick=quick)
        assert exp.prior.likelihood == "probit"


def test_configs_state_the_papers_alpha_and_attack_sets():
    """Figs. 5, S11, S13, S14 rescale with the paper's α (5.9, 5.0, 5.0, 6.0) in the authors' direction
    (W1/α, b1/α, αW2); every sweep config says which attack sets it uses."""
    alphas = {"fig5_temporal": 5.9, "s11_temporal_alpha5": 5.0, "s13_temporal_zeta": 5.0, "s14_temporal_long": 6.0}
    for path in CONFIGS:
        exp = config.load(path)
        if exp.kind == "sweep":
            assert "attack_resample = " in path.read_text() and exp.data.attack_resample is False
        elif path.stem in alphas:
            t = exp.temporal
            assert (t.alpha, t.rescale_direction, t.rescale_layer) == (alphas[path.stem], "inverse", 1)
            assert t.rescale_factor == pytest.approx(1 / alphas[path.stem])
        else:
            assert not exp.temporal.rescales


def test_every_figure_has_a_config():
    names = {p.stem for p in CONFIGS}
    for required in ("fig3_mnist_sgd", "fig3_cifar_fcn_sgd", "fig3_cifar_resnet50_sgd", "fig4_mnist_entropy_sgd",
                     "fig4_mnist_adam", "fig5_temporal", "s9_hessian", "s11_temporal_alpha5", "s13_temporal_zeta",
                     "s14_temporal_long", "s15_temporal_hessian", "s16_s21_overtraining", "s22_resnet50_adam",
                     "s23_optimizers", "s24_mnist_large"):
        assert required in names


@pytest.mark.parametrize("text, expected", [
    (TINY.replace("attack_sizes", "atack_sizes"), "unknown key [data] atack_sizes; did you mean 'attack_sizes'"),
    (TINY + "[trian]\n", "unknown key trian"),
    (TINY.replace("train_size = 50", "train_size = -5"), "[data] train_size must be ≥ 1, got -5"),
    (TINY.replace("train_size = 50", 'train_size = "50"'), "[data] train_size must be an integer"),
    (TINY.replace("seeds = [0, 1]", "seeds = [0, 0]"), "[train] seeds has duplicates"),
    (TINY.replace("seeds = [0, 1]", 'optimizers = ["sgdd"]'), "[train] optimizers — unknown optimizer 'sgdd'"),
    (TINY + '[model]\nname = "mlp"\n', "[model] name — unknown model 'mlp'"),
    (TINY + '[prior]\nlikelihood = "logit"\n', "[prior] likelihood must be one of"),
    (TINY + "[quick]\ndata = { seeds = [1] }\n", "unknown key [quick.data] seeds"),
    (TINY.replace('"sweep"', '"temporal"') + "[temporal]\novertrain = 10\nrescale_after = 20\n",
     "[temporal] rescale_after (20) is past the end of training"),
    (TINY + "[temporal]\nevery = 2\n", "temporal is only for experiment = \"temporal\""),
    (TINY.replace('experiment = "sweep"\n', ""), "missing key experiment"),
    (TINY + "[sharpness]\nzeta = [1e-3, 1e-4]\n", "[sharpness] zeta must be one number in a sweep"),
    (TINY.replace("attack_sizes", "attack_resample = 1\nattack_sizes"), "[data] attack_resample must be true or false"),
    (TINY.replace('"sweep"', '"temporal"') + '[temporal]\nrescale_after = 1\nrescale_direction = "up"\n',
     "[temporal] rescale_direction must be one of"),
])
def test_bad_configs_name_the_key(tmp_path, text, expected):
    with pytest.raises(UserError) as err:
        config.load(write(tmp_path, text))
    msg = str(err.value)
    assert expected in msg and "\n" not in msg and str(tmp_path / "c.toml") in msg


def test_malformed_toml_names_the_line(tmp_path):
    with pytest.raises(UserError, match=r"not valid TOML: .*line 4"):
        config.load(write(tmp_path, TINY.replace("train_size = 50", "train_size = = 50")))


def test_impossible_sizes_checked_against_the_data(tmp_path, mnist):
    exp = config.load(write(tmp_path, TINY.replace("attack_sizes = [0, 25]", "attack_sizes = [0, 9950]")))
    with pytest.raises(UserError, match=r"\[data\] attack_sizes.*10050 but mnist has only 10000"):
        config.check_data(exp, mnist)
    config.check_data(config.load(write(tmp_path, TINY)), mnist)


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace("attack_sizes = [0, 25]", "attack_sizes = [0, 9950]"), "[data] attack_sizes"),
    (lambda t: t.replace("train_size = 50", "train_size = 5o"), "not valid TOML"),
    (lambda t: t + "[train.opt_args]\nbeta_9 = 1\n", "[train] opt_args — optimizer sgd has no argument 'beta_9'"),
])
def test_cli_exits_2_with_one_line_before_any_work(tmp_path, capsys, data_dir, edit, expected):
    from tfflat_cli.main import main

    p = write(tmp_path, edit(TINY))
    out = tmp_path / "r.jsonl"
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(p), "--data-dir", data_dir, "--out", str(out)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1
    assert not out.exists() and not (tmp_path / "r.meta.json").exists()


def test_cli_rejects_the_wrong_command_and_bad_shard(tmp_path, capsys):
    from tfflat_cli.main import main

    p = write(tmp_path, TINY.replace('"sweep"', '"temporal"'))
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(p)])
    assert e.value.code == 2 and "run it with `tfflat temporal" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(write(tmp_path, TINY, "d.toml")), "--shard", "3/2"])
    assert e.value.code == 2 and "--shard 3/2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(tmp_path / "missing.toml")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_results_sidecar_accepts_the_same_config_and_refuses_another(tmp_path):
    """A sidecar written before the typed config (same sections and keys; α then defaulted to 5.9,
    inert without rescaling) still matches its config; a changed setting is refused, naming it."""
    import dataclasses
    import json

    from tfflat import runs
    from tfflat.experiments import results

    def sidecar(out, cfg):
        runs.write_json(results.meta_path(out), {"kind": "tfflat-results", "config": cfg, "indices": {"S": [1]}})

    exp = config.load(ROOT / "configs" / "s15_temporal_hessian.toml")
    before = json.loads(json.dumps(exp.to_dict()))
    before["temporal"]["alpha"] = 5.9
    sidecar(tmp_path / "a.jsonl", before)
    assert results.open_results(exp, tmp_path / "a.jsonl", {"config": exp.to_dict(), "indices": {"S": [1]}}) == set()

    other = dataclasses.replace(exp, temporal=dataclasses.replace(exp.temporal, every=2))
    with pytest.raises(UserError, match=r"different config \(\[temporal\] every differs\)"):
        results.open_results(other, tmp_path / "a.jsonl", {"config": other.to_dict(), "indices": {"S": [1]}})

    fig5 = config.load(ROOT / "configs" / "fig5_temporal.toml")        # rescales: α matters (old files: 1/5.9)
    sidecar(tmp_path / "b.jsonl", {**fig5.to_dict(), "temporal": {**fig5.to_dict()["temporal"], "alpha": 1 / 5.9}})
    with pytest.raises(UserError, match=r"\[temporal\] alpha differs"):
        results.open_results(fig5, tmp_path / "b.jsonl", {"config": fig5.to_dict(), "indices": {"S": [1]}})
