"""Hostile input, as a new user types it: every case is one `error: …` line naming the fix, exit 2, no
traceback (issue 12). One table per class: numeric options, sizes beyond memory, output paths, corrupt
data files, malformed run files, diverged (NaN) networks, data paths read from run.json."""

import gzip
import json
import shutil

import numpy as np
import pytest

from tfflat import runs
from tfflat.errors import UserError
from tfflat.training.run import TrainConfig, train_run

BOOL = ["--dataset", "boolean", "--bits", "4", "--train-size", "8", "--test-size", "8", "--max-epochs", "5"]


def _idx(path, array):
    """Write ``array`` (uint8) as an IDX file."""
    a = np.asarray(array, np.uint8)
    header = bytes([0, 0, 8, a.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in a.shape)
    path.write_bytes(header + a.tobytes())


def _edited(world, name, edit):
    """A copy of the boolean run whose run.json is ``edit(meta)`` (a dict, list or raw text)."""
    d = world / name
    shutil.copytree(world / "run", d)
    meta = json.loads((d / "run.json").read_text())
    new = edit(meta)
    (d / "run.json").write_text(new if isinstance(new, str) else json.dumps(new))
    return d


def _set(path, value):
    def edit(meta):
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return meta
    return edit


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Runs and files to be hostile with: a trained boolean run, copies of it broken in every way, corrupt
    data folders, a diverged (NaN) network."""
    import keras

    w = tmp_path_factory.mktemp("hostile")
    train_run(TrainConfig(dataset="boolean", bits=4, train_size=8, test_size=8, learning_rate=0.05, max_epochs=500),
              w / "run")
    # malformed run.json
    _edited(w, "notjson", lambda m: "{not json")
    _edited(w, "list", lambda m: [1, 2])
    _edited(w, "noversion", lambda m: {k: v for k, v in m.items() if k != "format_version"})
    _edited(w, "newer", _set(["format_version"], 99))
    _edited(w, "nospec", lambda m: {k: v for k, v in m.items() if k != "model_spec"})
    _edited(w, "negindex", _set(["indices", "S", "indices"], [-1, 2]))
    _edited(w, "widths", _set(["model_spec", "widths"], [30, 40]))
    _edited(w, "sigma", _set(["model_spec", "sigma_w"], 2.0))
    _edited(w, "badconfig", _set(["config", "learning_rate"], "fast"))
    _edited(w, "nanliteral", lambda m: '{"format_version": 1, "x": NaN}')
    for name, text in (("flatlist", "[1, 2]"), ("flatbad", '{"format_version": 1, "sharpness": [1]}')):
        shutil.copytree(w / "run", w / name)
        (w / name / "flatness.json").write_text(text)
    shutil.copytree(w / "run", w / "priorold")
    (w / "priorold" / "prior.json").write_text('{"by_likelihood": 3}')
    # a diverged network: one NaN weight
    shutil.copytree(w / "run", w / "nan")
    model = keras.models.load_model(w / "nan" / "model.keras", compile=False)
    weights = model.get_weights()
    weights[0][0, 0] = np.nan
    model.set_weights(weights)
    model.save(w / "nan" / "model.keras")
    model.save(w / "nan.keras")
    np.savez(w / "d.npz", x_train=np.random.default_rng(0).random((8, 4)).astype("float32"),
             y_train=np.array([0, 1] * 4))
    # corrupt data folders
    raw = gzip.compress(bytes(200000))
    (w / "gz").mkdir()
    (w / "gz" / "t10k-images-idx3-ubyte.gz").write_bytes(raw[:20] + b"\xff" * 200 + raw[220:5000])
    _idx(w / "gz" / "t10k-labels-idx1-ubyte", np.zeros(10))
    (w / "wrongsize").mkdir()
    _idx(w / "wrongsize" / "t10k-images-idx3-ubyte", np.zeros((10, 27, 27)))
    _idx(w / "wrongsize" / "t10k-labels-idx1-ubyte", np.arange(10))
    (w / "trunc").mkdir()
    (w / "trunc" / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    _idx(w / "trunc" / "t10k-labels-idx1-ubyte", np.arange(10))
    (w / "short").mkdir()
    (w / "short" / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + b"".join(
        int(s).to_bytes(4, "big") for s in (10, 28, 28)) + bytes(100))
    _idx(w / "short" / "t10k-labels-idx1-ubyte", np.arange(10))
    (w / "labels").mkdir()
    _idx(w / "labels" / "t10k-images-idx3-ubyte", np.zeros((10, 28, 28)))
    _idx(w / "labels" / "t10k-labels-idx1-ubyte", np.full(10, 200))
    (w / "cifarjunk").mkdir()
    (w / "cifarjunk" / "data_batch_1").write_bytes(b"\x80\x02junk junk junk")
    (w / "foreign").mkdir()
    (w / "foreign" / "notes.txt").write_text("mine")
    return w


R = "{w}/run"
TRAIN = ["train", *BOOL, "--out", "{w}/new"]
CASES = {
    # numeric options of train
    "lr 0": (TRAIN + ["--lr", "0"], "--lr must be > 0"),
    "lr -1": (TRAIN + ["--lr", "-1"], "--lr must be > 0"),
    "lr nan": (TRAIN + ["--lr", "nan"], "--lr must be a finite number"),
    "lr inf": (TRAIN + ["--lr", "inf"], "--lr must be a finite number"),
    "sigma-w nan": (TRAIN + ["--sigma-w", "nan"], "--sigma-w must be a finite number"),
    "sigma-w 0": (TRAIN + ["--sigma-w", "0"], "--sigma-w must be > 0"),
    "sigma-b inf": (TRAIN + ["--sigma-b", "inf"], "--sigma-b must be a finite number"),
    "sigma-b -1": (TRAIN + ["--sigma-b", "-1"], "--sigma-b must be ≥ 0"),
    "bn-momentum 1.5": (TRAIN + ["--bn-momentum", "1.5"], "--bn-momentum must be < 1"),
    "momentum nan": (TRAIN + ["--opt-arg", "momentum=nan"], "--opt-arg momentum must be a finite number"),
    "momentum inf": (TRAIN + ["--opt-arg", "momentum=inf"], "--opt-arg momentum must be a finite number"),
    "momentum -0.5": (TRAIN + ["--opt-arg", "momentum=-0.5"], "--opt-arg momentum must be ≥ 0"),
    "beta_1 1": (TRAIN + ["--optimizer", "adam", "--opt-arg", "beta_1=1"], "--opt-arg beta_1 must be < 1"),
    "epsilon 0": (TRAIN + ["--optimizer", "adam", "--opt-arg", "epsilon=0"], "--opt-arg epsilon must be > 0"),
    "nesterov 2": (TRAIN + ["--opt-arg", "nesterov=2"], "--opt-arg nesterov must be true or false"),
    "seed -1": (TRAIN + ["--seed", "-1"], "--seed must be ≥ 0"),
    "seed 2^32": (TRAIN + ["--seed", "4294967296"], "--seed must be ≤ 4294967295"),
    "seed 1e20": (TRAIN + ["--seed", "1e20"], "'1e20' is not a valid integer"),
    "data-seed -1": (TRAIN + ["--data-seed", "-1"], "--data-seed must be ≥ 0"),
    "batch-size 0": (TRAIN + ["--batch-size", "0"], "--batch-size must be ≥ 1"),
    "train-size 0": (TRAIN + ["--train-size", "0"], "--train-size must be ≥ 1"),
    "max-epochs -1": (TRAIN + ["--max-epochs", "-1"], "--max-epochs must be ≥ 0"),
    "overtrain -1": (TRAIN + ["--overtrain", "-1"], "--overtrain must be ≥ 0"),
    "bits 0": (TRAIN + ["--bits", "0"], "--bits must be ≥ 1"),
    "bits 21": (TRAIN + ["--bits", "21"], "--bits must be ≤ 20"),
    "fcn:0": (TRAIN + ["--model", "fcn:0"], "widths must be integers ≥ 1"),
    "fcn:abc": (TRAIN + ["--model", "fcn:abc"], "integer widths"),
    "checkpoint-every 0": (TRAIN + ["--checkpoint-every", "0"], "--checkpoint-every must be ≥ 1"),
    "checkpoint-minutes nan": (TRAIN + ["--checkpoint-minutes", "nan"], "--checkpoint-minutes must be a positive"),
    "checkpoint-minutes 0": (TRAIN + ["--checkpoint-minutes", "0"], "--checkpoint-minutes must be a positive"),
    # sizes beyond memory (refused before any data is read)
    "fcn:100000000": (["train", "--dataset", "mnist", "--model", "fcn:100000000", "--out", "{w}/new"],
                      "parameters) needs about"),
    # output paths
    "train --out ''": (["train", *BOOL, "--out", ""], "--out is empty"),
    "train --out other run": (["train", *BOOL, "--lr", "0.01", "--out", R], "already holds a trained run (--lr 0.05"),
    "train --out foreign": (["train", *BOOL, "--out", "{w}/foreign"], "is not empty (notes.txt)"),
    "sharpness --out ''": (["sharpness", R, "--out", ""], "names no file"),
    "sharpness --out DIR": (["sharpness", R, "--out", "{w}"], "is a directory"),
    "rescale --out ''": (["rescale", R, "--alpha", "2", "--out", ""], "--out is empty"),
    "rescale --out itself": (["rescale", R, "--alpha", "2", "--out", R], "is the run being rescaled"),
    # measure options
    "zeta nan": (["sharpness", R, "--zeta", "nan"], "--zeta"),
    "sharpness lr inf": (["sharpness", R, "--lr", "inf"], "--lr"),
    "sharpness epochs 0": (["sharpness", R, "--epochs", "0"], "--epochs must be ≥ 1"),
    "sharpness seed -1": (["sharpness", R, "--seed", "-1"], "--seed must be ≥ 0"),
    "maxiter 0": (["sharpness", R, "--method", "lbfgsb", "--maxiter", "0"], "--maxiter must be ≥ 1"),
    "data-seed -1 (measure)": (["sharpness", R, "--dataset", "boolean", "--data-seed", "-1"], "--data-seed must be ≥ 0"),
    "top-k 0": (["hessian", R, "--top-k", "0"], "--top-k must be between 1"),
    "top-k 10^6": (["hessian", R, "--top-k", "1000000"], "--top-k must be between 1"),
    "probes -1": (["hessian", R, "--probes", "-1"], "--probes must be ≥ 0"),
    "hessian seed -1": (["hessian", R, "--seed", "-1"], "--seed must be ≥ 0"),
    "delta 0": (["prior", R, "--delta", "0"], "--delta must be > 0"),
    "delta 1": (["prior", R, "--delta", "1"], "--delta must be < 1"),
    "tol nan": (["prior", R, "--tol", "nan"], "--tol must be a finite number"),
    "max-sweeps 0": (["prior", R, "--max-sweeps", "0"], "--max-sweeps must be ≥ 1"),
    "samples 0": (["prior", R, "--kernel", "empirical", "--samples", "0"], "--samples must be ≥ 1"),
    "kernel-seed -1": (["prior", R, "--kernel", "empirical", "--kernel-seed", "-1"], "--kernel-seed must be ≥ 0"),
    "prior sigma-w nan": (["prior", "{w}/run/model.keras", "--data", "{w}/d.npz", "--sigma-w", "nan"],
                          "--sigma-w must be a finite number"),
    "alpha 1e300": (["rescale", R, "--alpha", "1e300", "--out", "{w}/r"], "outside what float32 holds"),
    "alpha 1e-300": (["rescale", R, "--alpha", "1e-300", "--out", "{w}/r"], "outside what float32 holds"),
    "alpha 0": (["rescale", R, "--alpha", "0", "--out", "{w}/r"], "--alpha must be finite and > 0"),
    "alpha nan": (["rescale", R, "--alpha", "nan", "--out", "{w}/r"], "--alpha must be finite and > 0"),
    "layer 0": (["rescale", R, "--alpha", "2", "--layer", "0", "--out", "{w}/r"], "--layer 0 is out of range"),
    # corrupt data files
    "corrupt gz": (["train", "--data-dir", "{w}/gz", "--train-size", "5", "--test-size", "0", "--out", "{w}/new"],
                   "the file is corrupt"),
    "27x27 IDX": (["train", "--data-dir", "{w}/wrongsize", "--train-size", "5", "--test-size", "0", "--out", "{w}/new"],
                  "not 28×28 MNIST images"),
    "truncated header": (["train", "--data-dir", "{w}/trunc", "--train-size", "5", "--test-size", "0",
                          "--out", "{w}/new"], "header is incomplete"),
    "truncated IDX": (["train", "--data-dir", "{w}/short", "--train-size", "5", "--test-size", "0", "--out", "{w}/new"],
                      "truncated or corrupt"),
    "label 200": (["train", "--data-dir", "{w}/labels", "--train-size", "5", "--test-size", "0", "--out", "{w}/new"],
                  "holds label 200"),
    "junk CIFAR batch": (["train", "--dataset", "cifar_cats_cars", "--data-dir", "{w}/cifarjunk", "--train-size", "5",
                          "--test-size", "0", "--out", "{w}/new"], "cannot read CIFAR-10 batch"),
    # malformed run files
    "run.json not JSON": (["sharpness", "{w}/notjson"], "is not valid JSON"),
    "run.json a list": (["sharpness", "{w}/list"], "holds a list, not an object"),
    "run.json unversioned": (["sharpness", "{w}/noversion"], "has no format_version"),
    "run.json newer": (["sharpness", "{w}/newer"], "newer than this tfflat"),
    "run.json no model_spec": (["hessian", "{w}/nospec"], "malformed (no model_spec object)"),
    "run.json negative index": (["prior", "{w}/negindex"], "malformed (indices.S"),
    "run.json bad config": (["sharpness", "{w}/badconfig"], "config: learning_rate must be a number"),
    "run.json NaN literal": (["sharpness", "{w}/nanliteral"], "NaN is not JSON"),
    "spec widths ≠ model": (["prior", "{w}/widths"], "model_spec says [30, 40, 1]"),
    "spec sigma ≠ model": (["prior", "{w}/sigma"], "model_spec says 2"),
    "flatness.json a list": (["sharpness", "{w}/flatlist"], "flatness.json is not a tfflat file"),
    "flatness.json bad entry": (["hessian", "{w}/flatbad"], "not an object of results"),
    "prior.json unversioned": (["prior", "{w}/priorold"], "prior.json has no format_version"),
    # a diverged network
    "NaN net sharpness": (["sharpness", "{w}/nan"], "NaN or infinite weights"),
    "NaN net hessian": (["hessian", "{w}/nan"], "NaN or infinite weights"),
    "NaN net prior": (["prior", "{w}/nan"], "NaN or infinite weights"),
    "NaN net rescale": (["rescale", "{w}/nan", "--alpha", "2", "--out", "{w}/r"], "NaN or infinite weights"),
    "NaN .keras sharpness": (["sharpness", "{w}/nan.keras", "--data", "{w}/d.npz"], "NaN or infinite weights"),
    "NaN .keras prior": (["prior", "{w}/nan.keras", "--data", "{w}/d.npz"], "NaN or infinite weights"),
}


@pytest.mark.parametrize("args, needle", CASES.values(), ids=CASES.keys())
def test_hostile_input_is_one_line_exit_2(args, needle, world, run_cli):
    code, out, err = run_cli([a.format(w=world) for a in args])
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err
    assert not (world / "new").exists() and not (world / "r").exists()      # nothing half-made


def test_dense_hessian_beyond_memory_is_refused_with_the_number(tmp_path, data_dir, run_cli, monkeypatch):
    """The issue's `hessian RUN --top-k 31841 --probes 0` on the 784-40-40-1 FCN (p = 33,081) asks for the
    dense Hessian: 3 p² float64 = 26 GB, refused on a 16 GB machine before any Hessian-vector product."""
    train_run(TrainConfig(data_dir=data_dir, train_size=20, test_size=0, max_epochs=0), tmp_path / "m",
              raise_incomplete=False)
    monkeypatch.setenv("TFFLAT_MEMORY_GB", "16")
    code, _, err = run_cli(["hessian", tmp_path / "m", "--top-k", "31841", "--probes", "0"])
    assert code == 2 and err.count("\n") == 1, err
    assert "dense Hessian (33,081 × 33,081" in err and "needs about 26.3 GB" in err and "16 GB are available" in err
    assert not (tmp_path / "m" / "flatness.json").exists()


def test_prior_beyond_memory_is_refused(world, run_cli, monkeypatch):
    monkeypatch.setenv("TFFLAT_MEMORY_GB", "1e-6")
    code, _, err = run_cli(["prior", world / "run"])
    assert code == 2 and "the prior on n = 16 points (S + E) needs about" in err and err.count("\n") == 1, err


def test_diverged_training_is_refused_and_saves_nothing(tmp_path, run_cli):
    code, _, err = run_cli(["train", *BOOL, "--lr", "1e30", "--out", tmp_path / "d"])
    assert code == 2 and "training diverged at epoch 1" in err and "lower --lr" in err and err.count("\n") == 1, err
    assert not (tmp_path / "d" / "run.json").exists() and not (tmp_path / "d" / "model.keras").exists()


def test_run_data_path_is_validated(tmp_path, run_cli):
    """A data folder read from run.json: relative (refused, never resolved), gone (refused: --data-dir says
    where it is now), or holding other data (refused: the labels' fingerprint differs)."""
    data, other = tmp_path / "data", tmp_path / "other"
    for folder, labels in ((data, np.arange(60) % 10), (other, (np.arange(60) + 1) % 10)):
        folder.mkdir()
        _idx(folder / "t10k-images-idx3-ubyte", np.random.default_rng(0).integers(0, 255, (60, 28, 28)))
        _idx(folder / "t10k-labels-idx1-ubyte", labels)
    train_run(TrainConfig(data_dir=str(data), train_size=10, test_size=10, max_epochs=0), tmp_path / "run",
              raise_incomplete=False)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["source"]["data_dir"] == str(data.resolve())
    for name, where in (("rel", "../data"), ("gone", str(tmp_path / "moved"))):
        shutil.copytree(tmp_path / "run", tmp_path / name)
        m = dict(meta, source={**meta["source"], "data_dir": where})
        (tmp_path / name / "run.json").write_text(json.dumps(m))
    code, _, err = run_cli(["hessian", tmp_path / "rel", "--top-k", "2", "--probes", "0"])
    assert code == 2 and "not an absolute path" in err and "--data-dir" in err, err
    code, _, err = run_cli(["hessian", tmp_path / "gone", "--top-k", "2", "--probes", "0"])
    assert code == 2 and "which is not a directory here" in err and "--data-dir" in err, err
    code, _, err = run_cli(["hessian", tmp_path / "gone", "--data-dir", other, "--top-k", "2", "--probes", "0"])
    assert code == 2 and "is not the data run" in err and "labels of S, A, E differ" in err, err
    code, out, err = run_cli(["hessian", tmp_path / "gone", "--data-dir", data, "--top-k", "2", "--probes", "0"])
    assert code == 0 and "spectral norm" in out, err
    assert runs.load(tmp_path / "gone", data_dir=data).splits.x_train.shape == (10, 28, 28)
    repainted = tmp_path / "repainted"                  # the same labels, other pixels: a warning
    repainted.mkdir()
    _idx(repainted / "t10k-images-idx3-ubyte", np.random.default_rng(1).integers(0, 255, (60, 28, 28)))
    shutil.copy(data / "t10k-labels-idx1-ubyte", repainted)
    with pytest.warns(UserWarning, match="differ from those run .* was trained on"):
        runs.load(tmp_path / "gone", data_dir=repainted)


def test_refused_rescale_leaves_the_model_as_it_was(world):
    from tfflat.rescale import rescale_layer, rescale_neurons

    model = runs.load(world / "run", data=False).model
    before = model.get_weights()
    with pytest.raises(UserError, match="outside what float32 holds"):
        rescale_layer(model, 1, 1e37)                   # α W1 fits in float32, W2 / α underflows
    with pytest.raises(UserError, match="outside what float32 holds"):
        rescale_neurons(model, 2, [0, 1], [2.0, 1e-40])
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    rescale_layer(model, 1, 1e4)                        # within range: applied
    assert not np.array_equal(before[0], model.get_weights()[0])
