"""Experiment configs (TOML): one file per figure, validated strictly before any work starts.

A config names the experiment (``sweep`` or ``temporal``), the data, the model, the training grid
and the measurements; every key has a paper default (SPEC §1–5, :mod:`tfflat.defaults`). Example::

    experiment = "sweep"                  # Fig. 3(a)/(d)
    [data]
    dataset = "mnist"
    train_size = 500
    test_size = 1000
    attack_sizes = [0, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500]
    [train]
    optimizers = ["sgd"]
    seeds = [0, 1, 2, 3, 4]
    [prior]
    likelihood = "probit"
    [quick]                               # applied with --quick: same sections, any subset of keys
    data = { train_size = 100, test_size = 100, attack_sizes = [0, 50, 100] }

Data files: ``data.data_dir`` (relative paths are relative to the config file) or ``--data-dir``
on the command line (which wins); with neither, tensorflow-datasets downloads the data set.

Every problem is a :class:`~tfflat.errors.UserError` whose one line names the file and the key
(or the line, for TOML syntax errors).
"""

from __future__ import annotations

import copy
import difflib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tfflat import defaults
from tfflat.errors import UserError

KINDS = ("sweep", "temporal")
LIKELIHOODS = ("probit", "heaviside")
SHARPNESS_METHODS = ("sgd", "lbfgsb")


# ---------------------------------------------------------------- value checks
class _Bad(Exception):
    """A value failed its check; the message says what was expected."""


def _int(lo=None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"must be an integer, got {v!r}")
        if lo is not None and v < lo:
            raise _Bad(f"must be ≥ {lo}, got {v}")
        return v
    return check


def _float(lo=None, strict=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _Bad(f"must be a finite number, got {v!r}")
        if lo is not None and (v <= lo if strict else v < lo):
            raise _Bad(f"must be {'>' if strict else '≥'} {lo}, got {v}")
        return float(v)
    return check


def _str(choices=None):
    def check(v):
        if not isinstance(v, str):
            raise _Bad(f"must be a string, got {v!r}")
        if choices is not None and v not in choices:
            raise _Bad(f"must be one of {', '.join(map(repr, choices))}, got {v!r}")
        return v
    return check


def _bool(v):
    if not isinstance(v, bool):
        raise _Bad(f"must be true or false, got {v!r}")
    return v


def _table(v):
    if not isinstance(v, dict):
        raise _Bad(f"must be a table, got {v!r}")
    return dict(v)


def _list(item, unique=True, nonempty=True):
    def check(v):
        if not isinstance(v, list):
            raise _Bad(f"must be a list, got {v!r}")
        if nonempty and not v:
            raise _Bad("must not be empty")
        out = []
        for x in v:
            try:
                out.append(item(x))
            except _Bad as err:
                raise _Bad(f"item {x!r} {err}") from None
        if unique and len(set(out)) != len(out):
            raise _Bad(f"has duplicates: {v}")
        return out
    return check


def _one_or_list(item):
    lst = _list(item)

    def check(v):
        return lst(v) if isinstance(v, list) else [item(v)]
    return check


# section -> key -> check.  A key absent from the file takes its default (see _defaults).
SCHEMA = {
    "data": {
        "dataset": _str(("mnist", "cifar_cats_cars", "boolean")),
        "data_dir": _str(),
        "train_size": _int(1),
        "test_size": _int(0),
        "attack_sizes": _list(_int(0)),
        "data_seed": _int(0),
        "bits": _int(1),
        "target": _str(),
    },
    "model": {
        "name": _str(),
        "sigma_w": _float(0, strict=True),
        "sigma_b": _float(0),
        "bn_momentum": _float(0),
    },
    "train": {
        "optimizers": _list(_str()),
        "seeds": _list(_int(0)),
        "learning_rate": _float(0, strict=True),
        "opt_args": _table,
        "batch_size": _int(1),
        "max_epochs": _int(1),
        "stop_on": _str(("S", "SA")),
        "overtrain_epochs": _list(_int(0)),
    },
    "sharpness": {
        "enabled": _bool,
        "zeta": _one_or_list(_float(0, strict=True)),
        "method": _str(SHARPNESS_METHODS),
        "lr": _float(0, strict=True),
        "epochs": _int(1),
        "batch_size": _int(1),
    },
    "hessian": {
        "enabled": _bool,
        "top_k": _int(1),
    },
    "prior": {
        "enabled": _bool,
        "likelihood": _str(LIKELIHOODS),
        "delta": _float(0, strict=True),
    },
    "temporal": {
        "every": _int(1),
        "overtrain": _int(0),
        "rescale_epoch": _int(0),
        "rescale_after": _int(0),
        "alpha": _float(0, strict=True),
        "rescale_layer": _int(1),
    },
}
TOP = {"experiment": _str(KINDS), "description": _str()}
SECTIONS = tuple(SCHEMA)


def _defaults(kind: str, data: dict, model: dict) -> dict:
    """Paper defaults for every key, given the (already checked) dataset and model."""
    dataset = data.get("dataset", "mnist")
    sizes = defaults.PAPER_SIZES.get(dataset, {})
    family = defaults.model_family(model.get("name", "fcn"))
    sharp = defaults.SHARPNESS.get((dataset, family), defaults.SHARPNESS[("mnist", "fcn")])
    return {
        "data": {"dataset": "mnist", "data_dir": None, "train_size": sizes.get("train_size"),
                 "test_size": sizes.get("test_size"),
                 "attack_sizes": list(sizes.get("attack_sizes", [0])) if kind == "sweep" else [0],
                 "data_seed": 0, "bits": defaults.BOOLEAN_BITS, "target": "random"},
        "model": {"name": "fcn", "sigma_w": None, "sigma_b": None, "bn_momentum": None},
        "train": {"optimizers": ["sgd"], "seeds": list(range(5)) if kind == "sweep" else [0],
                  "learning_rate": None, "opt_args": {}, "batch_size": defaults.BATCH_SIZE,
                  "max_epochs": defaults.MAX_EPOCHS, "stop_on": "S", "overtrain_epochs": [0]},
        "sharpness": {"enabled": True, "zeta": [sharp["zeta"]], "method": "sgd", "lr": sharp["lr"],
                      "epochs": sharp["epochs"], "batch_size": sharp["batch_size"]},
        "hessian": {"enabled": False, "top_k": defaults.HESSIAN_TOP_K},
        "prior": {"enabled": True, "likelihood": "probit", "delta": defaults.PAC_BAYES_DELTA},
        "temporal": {"every": 1, "overtrain": 1000, "rescale_epoch": None, "rescale_after": None, "alpha": 5.9,
                     "rescale_layer": 1},
    }


# ---------------------------------------------------------------- the config object
@dataclass(frozen=True)
class Experiment:
    """A validated experiment config: one dict per section, every key filled in.

    ``data["data_dir"]`` is absolute (or ``None`` for tensorflow-datasets); ``temporal`` is ``None``
    for sweeps.
    """

    kind: str
    name: str
    description: str
    data: dict
    model: dict
    train: dict
    sharpness: dict
    hessian: dict
    prior: dict
    temporal: dict | None
    path: str | None = None
    quick: bool = False

    def to_dict(self) -> dict:
        """JSON-able form (stored in the results' sidecar, compared on resume)."""
        return {"experiment": self.kind, "name": self.name, "description": self.description,
                "quick": self.quick, **{s: copy.deepcopy(getattr(self, s)) for s in SECTIONS}}

    @classmethod
    def from_dict(cls, d: dict, path: str | None = None) -> "Experiment":
        return cls(d["experiment"], d["name"], d.get("description", ""),
                   **{s: copy.deepcopy(d[s]) for s in SECTIONS}, path=path, quick=d.get("quick", False))

    def comparable(self) -> dict:
        """What must match for two runs to share one results file (everything but the data's path)."""
        d = self.to_dict()
        d["data"] = {k: v for k, v in d["data"].items() if k != "data_dir"}
        d.pop("description", None)
        return d


def _where(path) -> str:
    return f"{path}" if path else "config"


def _fail(path, section, key, msg):
    loc = f"[{section}] {key}" if section else key
    raise UserError(f"{_where(path)}: {loc} {msg}")


def _check_keys(path, section, table: dict, known) -> None:
    for key in table:
        if key not in known:
            near = difflib.get_close_matches(key, list(known), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(known)}"
            prefix = f"[{section}] " if section else ""
            raise UserError(f"{_where(path)}: unknown key {prefix}{key}{hint}")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for section, table in over.items():
        out.setdefault(section, {}).update(copy.deepcopy(table))
    return out


def parse(raw: dict, path=None, quick: bool = False, data_dir: str | None = None) -> Experiment:
    """Validate a config given as a dict (as read from TOML); see the module docstring."""
    if not isinstance(raw, dict):
        raise UserError(f"{_where(path)}: a config is a TOML table")
    _check_keys(path, None, raw, list(TOP) + list(SECTIONS) + ["quick"])
    if "experiment" not in raw:
        raise UserError(f"{_where(path)}: missing key experiment (\"sweep\" or \"temporal\")")
    kind = _value(path, None, "experiment", raw["experiment"], TOP["experiment"])
    description = _value(path, None, "description", raw.get("description", ""), TOP["description"])
    for section in SECTIONS:
        if section in raw and not isinstance(raw[section], dict):
            _fail(path, None, section, "must be a table ([{0}] section)".format(section))
        _check_keys(path, section, raw.get(section, {}), list(SCHEMA[section]))
    quick_raw = raw.get("quick", {})
    if not isinstance(quick_raw, dict):
        _fail(path, None, "quick", "must be a table of sections ([quick.data] …)")
    _check_keys(path, "quick", quick_raw, list(SECTIONS))
    for section, table in quick_raw.items():
        if not isinstance(table, dict):
            _fail(path, "quick", section, "must be a table")
        _check_keys(path, f"quick.{section}", table, list(SCHEMA[section]))
        for key, value in table.items():
            _value(path, f"quick.{section}", key, value, SCHEMA[section][key])
    if kind == "temporal" and "overtrain_epochs" in raw.get("train", {}):
        _fail(path, "train", "overtrain_epochs", "is for sweeps; a temporal run uses [temporal] overtrain")
    if kind == "sweep" and "temporal" in raw:
        _fail(path, None, "temporal", "is only for experiment = \"temporal\"")

    merged = _merge({k: raw.get(k, {}) for k in SECTIONS}, quick_raw if quick else {})
    checked = {s: {k: _value(path, s, k, v, SCHEMA[s][k]) for k, v in merged[s].items()} for s in SECTIONS}
    full = _defaults(kind, checked["data"], checked["model"])
    for s in SECTIONS:
        full[s].update(checked[s])
    data = full["data"]
    for key in ("train_size", "test_size"):
        if data[key] is None:
            _fail(path, "data", key, f"has no default for dataset {data['dataset']!r}; set it")
    if data_dir is not None:
        data["data_dir"] = str(Path(data_dir).expanduser().resolve())
    elif data["data_dir"] is not None:
        base = Path(path).resolve().parent if path else Path.cwd()
        data["data_dir"] = str((base / Path(data["data_dir"]).expanduser()).resolve())
    if kind == "sweep":
        full["temporal"] = None
    elif full["temporal"]["rescale_epoch"] is not None and full["temporal"]["rescale_after"] is not None:
        _fail(path, "temporal", "rescale_after", "and rescale_epoch are exclusive: rescale at an absolute epoch "
              "or a number of epochs after the zero-error epoch, not both")
    elif (full["temporal"]["rescale_after"] or 0) > full["temporal"]["overtrain"]:
        _fail(path, "temporal", "rescale_after", f"({full['temporal']['rescale_after']}) is past the end of "
              f"training (overtrain = {full['temporal']['overtrain']} epochs after zero error); lower it")
    if kind == "sweep" and len(full["sharpness"]["zeta"]) != 1:
        _fail(path, "sharpness", "zeta", "must be one number in a sweep (ζ sweeps are temporal runs)")
    name = Path(path).stem if path else "experiment"
    exp = Experiment(kind, name, description, **full, path=str(path) if path else None, quick=quick)
    _check_semantics(exp)
    return exp


def _value(path, section, key, value, check):
    try:
        return check(value)
    except _Bad as err:
        _fail(path, section, key, str(err))


def _check_semantics(exp: Experiment) -> None:
    """Cross-checks that need the tfflat registries (optimizers, models) but no data."""
    from tfflat.training import optimizers

    path = exp.path
    for name in exp.train["optimizers"]:
        for key, args in (("optimizers", {}), ("opt_args", exp.train["opt_args"])):
            try:
                optimizers.resolve(name, exp.train["learning_rate"], **args)
            except UserError as err:
                _fail(path, "train", key, f"— {err}")
    d = exp.data
    shape = {"mnist": (28, 28), "cifar_cats_cars": (32, 32, 3), "boolean": (d["bits"],)}[d["dataset"]]
    try:
        model_spec(exp, shape)
    except UserError as err:
        _fail(path, "model", "name", f"— {err}")
    t = exp.temporal
    if t is not None and (t["rescale_epoch"], t["rescale_after"]) != (None, None) and exp.model["name"] == "resnet50":
        _fail(path, "temporal", "rescale_epoch", "α-rescaling needs a ReLU FCN (model fcn, fcn-small or fcn:…)")


def model_spec(exp: Experiment, input_shape) -> dict:
    """The model spec (:func:`tfflat.models.model_spec`) of the config's ``[model]``."""
    from tfflat import models

    m = exp.model
    return models.model_spec(m["name"], exp.data["dataset"], input_shape, sigma_w=m["sigma_w"],
                             sigma_b=m["sigma_b"], bn_momentum=m["bn_momentum"])


def load(path, quick: bool = False, data_dir: str | None = None) -> Experiment:
    """Read and validate a TOML config file (see the module docstring)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise UserError(f"config {path} does not exist; see configs/ for the paper's figures") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read config {path}: {err}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML: {err}") from None
    return parse(raw, p, quick=quick, data_dir=data_dir)


def check_data(exp: Experiment, task=None):
    """Load the task and check the largest split fits the data; returns the task.

    Raises a :class:`UserError` naming ``[data]`` when the sizes are impossible.
    """
    from tfflat.data import draw_indices, load_task

    d = exp.data
    try:
        task = task or load_task(d["dataset"], d["data_dir"], bits=d["bits"], target=d["target"],
                                 target_seed=d["data_seed"])
    except UserError as err:
        _fail(exp.path, "data", "data_dir" if d["dataset"] != "boolean" else "target", f"— {err}")
    try:
        draw_indices(task, d["train_size"], max(d["attack_sizes"]), d["test_size"], d["data_seed"])
    except UserError as err:
        _fail(exp.path, "data", "attack_sizes/train_size/test_size", f"are impossible: {err}")
    return task
