"""`tfflat flatness`: the measure zoo of a run (cached in RUN/flatness.json), of a .keras CNN with --data,
the measured invariance table, strict JSON and one-line errors."""

import json

import numpy as np
import pytest

from tfflat.flatness import MEASURES, flatness_measures

LEAN = ["--set", "epochs=2", "--set", "probes=10"]
SOME = "keskar_sharpness,hessian_spectral_norm,fisher_rao_norm,relative_flatness,path_norm"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A Boolean n = 7 run (7-40-40-1 ReLU, |S| = 32) saved at its initialisation."""
    from tfflat.training.run import TrainConfig, train_run

    out = tmp_path_factory.mktemp("runs") / "bool"
    train_run(TrainConfig(dataset="boolean", train_size=32, test_size=32, max_epochs=0), out, raise_incomplete=False)
    return out


def test_run_measures_cached_per_measure(run_dir, run_cli):
    from tfflat import runs

    code, out, err = run_cli(["flatness", run_dir, "--measures", SOME, "--json", *LEAN])
    assert code == 0, err
    first = json.loads(out)
    assert list(first["measures"]) == SOME.split(",") and first["kind"] == "run"
    for name, r in first["measures"].items():
        assert isinstance(r["value"], float) and not r["stored"], name
        assert (r["invariant_layerwise"], r["invariant_neuronwise"]) == MEASURES[name].expected(), name
    # Table 1's Boolean row for the sharpness (batch 16) under --set epochs; --set probes reaches relative_flatness
    assert first["measures"]["keskar_sharpness"]["settings"]["batch_size"] == 16
    assert first["measures"]["keskar_sharpness"]["settings"]["epochs"] == 2
    assert first["measures"]["relative_flatness"]["settings"]["probes"] == 10
    stored = json.loads((run_dir / "flatness.json").read_text())["measures"]
    assert set(stored) == set(SOME.split(",")) and len(stored["path_norm"]["weights_sha1"]) == 40
    # the values are the library's on the run's network and S
    run = runs.load(run_dir)
    lib = flatness_measures(run.model, run.splits.x_train, run.splits.y_train, ["fisher_rao_norm", "path_norm"])
    for name in lib:
        assert first["measures"][name]["value"] == pytest.approx(lib[name]["value"], rel=1e-6)

    # asked again (a subset and one more): the stored ones are read back, only the new one computed
    code, out, err = run_cli(["flatness", run_dir, "--measures", "path_norm,spectral_norm_product,keskar_sharpness",
                              "--json", "--set", "epochs=2"])
    assert code == 0, err
    again = json.loads(out)["measures"]
    assert again["path_norm"]["stored"] and again["keskar_sharpness"]["stored"]
    assert not again["spectral_norm_product"]["stored"]
    assert again["keskar_sharpness"]["value"] == first["measures"]["keskar_sharpness"]["value"]
    # other settings, or --force, recompute
    code, out, _ = run_cli(["flatness", run_dir, "--measures", "keskar_sharpness", "--json", "--set", "epochs=3"])
    assert not json.loads(out)["measures"]["keskar_sharpness"]["stored"]
    code, out, _ = run_cli(["flatness", run_dir, "--measures", "path_norm", "--json", "--force"])
    forced = json.loads(out)["measures"]["path_norm"]
    assert not forced["stored"] and forced["value"] == pytest.approx(first["measures"]["path_norm"]["value"], rel=1e-6)
    assert set(json.loads((run_dir / "flatness.json").read_text())["measures"]) == \
        set(SOME.split(",")) | {"spectral_norm_product"}
    # the human summary
    code, out, _ = run_cli(["flatness", run_dir, "--measures", "path_norm"])
    assert code == 0 and out.split("\n")[2].split()[:4] == ["path_norm", out.split("\n")[2].split()[1], "yes", "yes"]
    assert "stored" in out and "flatness.json" in out


def test_invariance_table_measured(run_dir, run_cli):
    code, out, err = run_cli(["flatness", run_dir, "--measures", "path_norm,spectral_norm_product", "--invariance",
                              "--layer", "1", "--alpha", "5.9", "--json"])
    assert code == 0, err
    rows = {r["measure"]: r for r in json.loads(out)["invariance"]}
    assert rows["path_norm"]["invariant_layerwise"] and rows["path_norm"]["invariant_neuronwise"]
    spectral = rows["spectral_norm_product"]
    assert spectral["invariant_layerwise"] and not spectral["invariant_neuronwise"]
    assert all(r["agrees"] for r in rows.values()) and len(rows["path_norm"]["changes"]) == 2
    code, out, _ = run_cli(["flatness", run_dir, "--measures", "path_norm", "--invariance", "--layer", "2"])
    table = out[out.index("expected vs measured"):].splitlines()
    cells = table[3].split()            # measure, expected, tested, max change (layer-, neuron-wise), agrees
    assert code == 0 and cells[:3] == ["path_norm", "yes", "yes"] and cells[4:6] == ["yes", "yes"] and cells[7] == "yes"
    assert float(cells[3]) < 1e-5 and float(cells[6]) < 1e-5


def test_keras_cnn_with_data(tmp_path, run_cli):
    """A small CNN with a sigmoid head in a .keras file, measured on --data; --out holds strict JSON."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 8, 8, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy")
    model.save(tmp_path / "cnn.keras")
    names = "fisher_rao_norm,relative_flatness,path_norm,spectral_norm_product"
    code, out, err = run_cli(["flatness", tmp_path / "cnn.keras", "--data", tmp_path / "d.npz", "--measures", names,
                              "--json", "--out", tmp_path / "m.json"])
    assert code == 0, err
    got = json.loads(out)
    assert got["kind"] == "keras" and got["file"] is None and list(got["measures"]) == names.split(",")
    lib = flatness_measures(model, x, y, names.split(","))
    for name in lib:
        assert got["measures"][name]["value"] == pytest.approx(lib[name]["value"], rel=1e-5), name
    json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    # a measure that does not apply is reported with its reason (the others still computed)
    model2 = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, activation="tanh"),
                               keras.layers.Flatten(), keras.layers.Dense(1)])
    model2.save(tmp_path / "tanh.keras")
    code, out, err = run_cli(["flatness", tmp_path / "tanh.keras", "--data", tmp_path / "d.npz", "--measures",
                              "path_norm,spectral_norm_product", "--json"])
    got = json.loads(out)["measures"]
    assert code == 0 and got["path_norm"]["value"] is None and "ReLU" in got["path_norm"]["reason"]
    assert got["spectral_norm_product"]["value"] > 0


def test_list_and_bad_input(run_dir, tmp_path, run_cli):
    code, out, _ = run_cli(["flatness", "--list", "--json"])
    assert code == 0 and list(json.loads(out)["measures"]) == list(MEASURES)
    cases = [
        (["flatness", run_dir, "--measures", "pathnorm"], "did you mean path_norm"),
        (["flatness", run_dir, "--measures", "path_norm", "--set", "rho"], "KEY=VALUE"),
        (["flatness", run_dir, "--measures", "path_norm", "--set", "rho=0.1"], "no selected measure has a setting"),
        (["flatness", run_dir, "--measures", "path_norm", "--alpha", "2"], "--invariance"),
        (["flatness", tmp_path / "missing"], "does not exist"),
        (["flatness"], "give MODEL"),
    ]
    for args, needle in cases:
        code, out, err = run_cli(args)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (args, err)
