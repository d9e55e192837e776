"""Experiment configs (TOML): one file per figure, validated strictly before any work starts.

A config names the experiment (``sweep`` or ``temporal``), the data, the model, the training grid
and the measurements. Each ``[section]`` is a frozen dataclass below (:class:`Data`, :class:`Model`,
:class:`Train`, :class:`Sharpness`, :class:`Hessian`, :class:`Prior`, :class:`Temporal`,
:class:`Flatness` — the measure zoo) whose field
types are the validation (pydantic, strict: no string is read as a number) and whose defaults are the
library's: :class:`~tfflat.training.run.TrainConfig`, :mod:`tfflat.defaults` and the signatures of
the functions that do the work. The defaults that depend on the dataset, the model or the kind of
experiment — |S|, |E|, the |A| grid, the seeds and Table 1's sharpness settings — come from
:func:`paper_defaults`. Example::

    experiment = "sweep"                  # Fig. 3(a)/(d)
    [data]
    dataset = "mnist"
    train_size = 500
    test_size = 1000
    attack_sizes = [0, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500]
    attack_resample = false               # one A per |A| for all seeds (true: a new A per seed)
    [train]
    optimizers = ["sgd"]
    seeds = [0, 1, 2, 3, 4]
    [prior]
    likelihood = "probit"                 # what the published figures computed (the default: heaviside)
    [quick]                               # applied with --quick: same sections, any subset of keys
    data = { train_size = 100, test_size = 100, attack_sizes = [0, 50, 100] }

Data files: ``data.data_dir`` (relative paths are relative to the config file) or ``--data-dir``
on the command line (which wins); with neither, tensorflow-datasets downloads the data set.

Every problem is a :class:`~tfflat.errors.UserError` whose one line names the file and the key
(or the line, for TOML syntax errors).
"""

import dataclasses
import difflib
import inspect
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from tfflat import defaults
from tfflat.data import TASKS
from tfflat.errors import UserError
from tfflat.flatness.sharpness import METHODS as SHARPNESS_METHODS
from tfflat.flatness.sharpness import sharpness as _sharpness
from tfflat.prior.ep import LIKELIHOODS
from tfflat.prior.prior import log_prior as _log_prior
from tfflat.training.run import STOP_ON, TrainConfig

KINDS = ("sweep", "temporal")
RESCALE_DIRECTIONS = ("eq9", "inverse")
_RUN = TrainConfig()       # the defaults of one training run


def library_default(fn, name: str):
    """The default of parameter ``name`` in ``fn``'s signature (the one place that value is written)."""
    return inspect.signature(fn).parameters[name].default


# ---------------------------------------------------------------- field types
def _sequence(v):
    """TOML arrays (and JSON lists) become tuples; anything else is an error."""
    if isinstance(v, (list, tuple)):
        return tuple(v)
    raise ValueError(f"must be a list, got {v!r}")


def _one_or_sequence(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v,)


def _unique(v: tuple) -> tuple:
    if len(set(v)) != len(v):
        raise ValueError(f"has duplicates: {list(v)}")
    return v


def _grid(item, scalar_ok: bool = False):
    """A non-empty tuple of distinct ``item`` values, written as a TOML array (or one value)."""
    return Annotated[tuple[item, ...], BeforeValidator(_one_or_sequence if scalar_ok else _sequence),
                     Field(min_length=1), AfterValidator(_unique)]


PositiveInt = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]

_section = _pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid", strict=True))


# ---------------------------------------------------------------- the sections
@_section
class Data:
    """``[data]``: the task and the splits S, A, E (SPEC §1). S and E never change within an experiment.

    ``attack_resample = false``: one attack subset per |A|, shared by every seed (A for |A| is the
    first |A| of the largest, so the subsets are nested); ``true``: a new A drawn for every
    (|A|, seed) — App. J.1's "for each subset of attack set we sample 5 times" read as new subsets
    (:func:`tfflat.data.draw_indices` with ``sample=seed``).
    """

    train_size: PositiveInt
    test_size: Count
    attack_sizes: _grid(Count)
    dataset: Literal[tuple(TASKS)] = _RUN.dataset
    data_dir: str | None = _RUN.data_dir          # absolute once parsed; None: tensorflow-datasets
    data_seed: Count = _RUN.data_seed
    attack_resample: bool = defaults.ATTACK_RESAMPLE
    bits: PositiveInt = _RUN.bits                 # boolean task only
    target: str = _RUN.target                     # boolean task only


@_section
class Model:
    """``[model]``: ``fcn``, ``fcn-small``, ``fcn:W1,W2,…`` or ``resnet50``; σ's default to the task's."""

    name: str = _RUN.model
    sigma_w: Positive | None = _RUN.sigma_w
    sigma_b: NonNegative | None = _RUN.sigma_b
    bn_momentum: NonNegative | None = _RUN.bn_momentum


@_section
class Train:
    """``[train]``: the grid of optimizers × seeds (× overtraining epochs) and the run settings (SPEC §3)."""

    seeds: _grid(Count)
    optimizers: _grid(str) = (_RUN.optimizer,)
    learning_rate: Positive | None = _RUN.learning_rate
    opt_args: dict = dataclasses.field(default_factory=lambda: dict(_RUN.opt_args))
    batch_size: PositiveInt = _RUN.batch_size
    max_epochs: PositiveInt = _RUN.max_epochs
    stop_on: Literal[STOP_ON] = _RUN.stop_on
    overtrain_epochs: _grid(Count) = (_RUN.overtrain,)       # sweeps only


@_section
class Sharpness:
    """``[sharpness]``: Keskar sharpness (Def. 2.1) at each ζ; the defaults are Table 1's."""

    zeta: _grid(Positive, scalar_ok=True)          # one ζ in a sweep; several in a temporal run (Fig. S13)
    lr: Positive
    epochs: PositiveInt
    batch_size: PositiveInt
    enabled: bool = True
    method: Literal[SHARPNESS_METHODS] = library_default(_sharpness, "method")


@_section
class Hessian:
    """``[hessian]``: spectral norm and top-k eigenvalue product of ∇²L (App. E)."""

    enabled: bool = False
    top_k: PositiveInt = defaults.HESSIAN_TOP_K


@_section
class Prior:
    """``[prior]``: log P(f) by EP on the NNGP / empirical kernel, and the PAC-Bayes bound (SPEC §5)."""

    enabled: bool = True
    likelihood: Literal[tuple(LIKELIHOODS)] = library_default(_log_prior, "likelihood")
    delta: Positive = library_default(_log_prior, "delta")


@_section
class Temporal:
    """``[temporal]``: measure every ``every`` epochs through zero error and ``overtrain`` more; optionally
    α-rescale hidden layer ``rescale_layer`` (1-based) at epoch ``rescale_epoch`` or ``rescale_after``
    epochs after zero error.

    α is App. F eq. (9)'s factor; ``rescale_direction`` says which way it is applied:
    ``"eq9"``: (W_i, b_i, W_{i+1}) → (αW_i, αb_i, W_{i+1}/α), eq. (9) as written;
    ``"inverse"``: (W_i, b_i, W_{i+1}) → (W_i/α, b_i/α, αW_{i+1}), what the authors' code did for
    Fig. 5 (``W1/5.9, b/5.9, 5.9·W2``, layer 1), so the paper-figure configs say α = 5.9, 5.0, 6.0
    with ``"inverse"``. Both leave the function unchanged.
    """

    every: PositiveInt = 1
    overtrain: Count = defaults.TEMPORAL_OVERTRAIN
    rescale_epoch: Count | None = None
    rescale_after: Count | None = None
    alpha: Positive = defaults.RESCALE_ALPHA
    rescale_layer: PositiveInt = 1
    rescale_direction: Literal[RESCALE_DIRECTIONS] = defaults.RESCALE_DIRECTION

    @property
    def rescales(self) -> bool:
        return (self.rescale_epoch, self.rescale_after) != (None, None)

    @property
    def rescale_factor(self) -> float:
        """The factor eq. (9) multiplies W_i, b_i by (and divides W_{i+1} by): α, or 1/α for ``"inverse"``."""
        return self.alpha if self.rescale_direction == "eq9" else 1.0 / self.alpha


def _measure_names(v):
    """``"all"`` → every measure of the zoo; a TOML array of names → a tuple (checked by :func:`_known`)."""
    from tfflat.flatness.measures import MEASURES

    if v == "all" or (isinstance(v, (list, tuple)) and list(v) == ["all"]):
        return tuple(MEASURES)
    if isinstance(v, str):
        v = [m.strip() for m in v.split(",") if m.strip()]
    return _sequence(v)


def _known(v: tuple) -> tuple:
    from tfflat.flatness.measures import MEASURES

    for name in v:
        if name not in MEASURES:
            near = difflib.get_close_matches(name, list(MEASURES), n=1)
            raise ValueError(f"has no measure {name!r}" + (f"; did you mean {near[0]!r}?" if near else
                             f"; choose \"all\" or from {', '.join(MEASURES)}"))
    return v


@_section
class Flatness:
    """``[flatness]``: measures of the zoo (:data:`tfflat.flatness.MEASURES`) at every measured point.

    ``measures``: ``"all"`` or a list of names (default: none — all of them cost 30–50 s per point
    at |S| = 100 on 2 loaded CPU cores, several times the rest of a point; ``tfflat sweep --measures
    all`` turns them on). Each record
    gains ``flatness_<name>`` (the value, which grows with sharpness), ``flatness_<name>_seconds``,
    its scalar details (``flatness_<name>_<detail>``) and, for a measure that does not apply,
    ``flatness_<name>_error``. ``settings``: ``{setting = value}`` for every selected measure that
    has it and/or ``{<measure> = {setting = value}}`` (see ``MEASURES[name].settings()``);
    ``keskar_sharpness`` takes ``[sharpness]``'s ζ (the first), lr, epochs, batch size and method
    unless set here. Random draws use the point's seed.
    """

    measures: Annotated[tuple[str, ...], BeforeValidator(_measure_names), AfterValidator(_unique),
                        AfterValidator(_known)] = ()
    settings: dict = dataclasses.field(default_factory=dict)


SECTIONS = {"data": Data, "model": Model, "train": Train, "sharpness": Sharpness, "hessian": Hessian,
            "prior": Prior, "temporal": Temporal, "flatness": Flatness}
OPTIONAL = {"flatness": Flatness}       # sections a sidecar written before they existed may lack


@_section
class _Head:
    experiment: Literal[KINDS]
    description: str = ""


def paper_defaults(kind: str, dataset: str, model: str) -> dict:
    """The defaults that depend on the experiment, dataset and model: the paper's |S|, |E| and |A|
    grid (:data:`tfflat.defaults.PAPER_SIZES`; a temporal run: |A| = 0), the seeds (a sweep's
    :data:`~tfflat.defaults.SWEEP_SEEDS`, one otherwise) and Table 1's sharpness settings."""
    sizes = defaults.PAPER_SIZES.get(dataset, {})
    family = defaults.model_family(model if isinstance(model, str) else "")
    sharp = defaults.SHARPNESS.get((dataset, family), defaults.SHARPNESS[("mnist", "fcn")])
    data = {k: sizes[k] for k in ("train_size", "test_size") if k in sizes}
    data["attack_sizes"] = tuple(sizes.get("attack_sizes", (0,))) if kind == "sweep" else (0,)
    return {"data": data,
            "train": {"seeds": defaults.SWEEP_SEEDS if kind == "sweep" else (0,)},
            "sharpness": {"zeta": sharp["zeta"], "lr": sharp["lr"], "epochs": sharp["epochs"],
                          "batch_size": sharp["batch_size"]}}


# ---------------------------------------------------------------- the config object
@dataclasses.dataclass(frozen=True)
class Experiment:
    """A validated experiment config: one frozen dataclass per section, every field filled in.

    ``data.data_dir`` is absolute (or ``None`` for tensorflow-datasets); ``temporal`` is ``None``
    for sweeps.
    """

    kind: str
    name: str
    description: str
    data: Data
    model: Model
    train: Train
    sharpness: Sharpness
    hessian: Hessian
    prior: Prior
    temporal: Temporal | None
    flatness: Flatness = dataclasses.field(default_factory=Flatness)
    path: str | None = None
    quick: bool = False

    def to_dict(self) -> dict:
        """JSON-able form (stored in the results' sidecar, compared on resume)."""
        return {"experiment": self.kind, "name": self.name, "description": self.description, "quick": self.quick,
                **{s: None if getattr(self, s) is None else _plain(dataclasses.asdict(getattr(self, s)))
                   for s in SECTIONS}}

    @classmethod
    def from_dict(cls, d: dict, path: str | None = None) -> "Experiment":
        """Inverse of :meth:`to_dict` (validated, so a damaged sidecar is reported, not used)."""
        sections = {s: (OPTIONAL[s]() if s in OPTIONAL else None) if d.get(s) is None else
                    _build(path, s, SECTIONS[s], d[s]) for s in SECTIONS}
        return cls(d["experiment"], d["name"], d.get("description", ""), **sections, path=path,
                   quick=d.get("quick", False))

    def comparable(self) -> dict:
        """What must match for two runs to share one results file: everything but the data's path and
        the description, and — when nothing is rescaled — the rescaling's factor and layer."""
        d = self.to_dict()
        d["data"] = {k: v for k, v in d["data"].items() if k != "data_dir"}
        d.pop("description", None)
        if self.temporal is not None and not self.temporal.rescales:
            d["temporal"] = {k: v for k, v in d["temporal"].items()
                             if k not in ("alpha", "rescale_layer", "rescale_direction")}
        return d

    def zoo_defaults(self) -> dict:
        """The ``defaults`` of :func:`tfflat.flatness.measures.plan` under ``[flatness] settings``:
        ``keskar_sharpness`` with ``[sharpness]``'s ζ (the first), lr, epochs, batch size and method."""
        sh = self.sharpness
        return {"keskar_sharpness": {"zeta": sh.zeta[0], "lr": sh.lr, "epochs": sh.epochs, "batch_size": sh.batch_size,
                                     "method": sh.method}}

    def run_config(self, optimizer: str | None = None, attack_size: int = 0, seed: int = 0,
                   overtrain: int = 0) -> TrainConfig:
        """The :class:`~tfflat.training.run.TrainConfig` of one point (``optimizer`` default: the first of
        ``[train] optimizers``): a point trains exactly as ``tfflat train`` with these settings."""
        d, m, t = self.data, self.model, self.train
        return TrainConfig(dataset=d.dataset, data_dir=d.data_dir, model=m.name, sigma_w=m.sigma_w, sigma_b=m.sigma_b,
                           bn_momentum=m.bn_momentum, optimizer=optimizer or t.optimizers[0],
                           learning_rate=t.learning_rate,
                           opt_args=dict(t.opt_args), batch_size=t.batch_size, train_size=d.train_size,
                           attack_size=attack_size, test_size=d.test_size, seed=seed, data_seed=d.data_seed,
                           max_epochs=t.max_epochs, overtrain=overtrain, stop_on=t.stop_on, bits=d.bits,
                           target=d.target)

    def model_spec(self, input_shape) -> dict:
        """The model spec (:func:`tfflat.models.model_spec`) of ``[model]`` for the task's inputs."""
        from tfflat.training import run

        return run.model_spec(self.run_config(), input_shape)


def _plain(v):
    """Tuples → lists, recursively (the JSON form)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------- errors: one line naming the key
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


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


_TYPES = {"int_type": "an integer", "float_type": "a finite number", "finite_number": "a finite number",
          "string_type": "a string", "bool_type": "true or false", "dict_type": "a table"}


def _message(err: dict) -> str:
    """pydantic's first error → the text after ``[section] key``."""
    kind, got, ctx = err["type"], err["input"], err.get("ctx") or {}
    if kind in _TYPES:
        text = f"must be {_TYPES[kind]}, got {got!r}"
    elif kind == "greater_than_equal":
        text = f"must be ≥ {ctx['ge']:g}, got {got}"
    elif kind == "greater_than":
        text = f"must be > {ctx['gt']:g}, got {got}"
    elif kind == "literal_error":
        text = f"must be one of {ctx['expected']}, got {got!r}"
    elif kind == "too_short":
        text = "must not be empty"
    elif kind == "value_error":
        text = str(ctx.get("error", err["msg"]))
    else:
        text = err["msg"][:1].lower() + err["msg"][1:]
    return f"item {got!r} {text}" if len(err["loc"]) > 1 else text


def _build(path, section, cls, values: dict, quick_keys=()):
    """``cls(**values)``, or a one-line :class:`UserError` naming ``[section] key``
    (``[quick.section] key`` when the bad value came from ``[quick]``)."""
    _check_keys(path, section, values, _fields(cls))
    try:
        return cls(**values)
    except ValidationError as err:
        first = err.errors()[0]
        key = first["loc"][0] if first["loc"] else "?"
        where = f"quick.{section}" if key in quick_keys else section
        if first["type"] == "missing_argument":
            _fail(path, where, key, "is missing")
        _fail(path, where, key, _message(first))


# ---------------------------------------------------------------- parsing
def parse(raw: dict, path=None, quick: bool = False, data_dir: str | None = None, measures=None) -> Experiment:
    """Validate a config given as a dict (as read from TOML); see the module docstring. ``measures``
    (``"all"``, names, or ``"none"``) replaces ``[flatness] measures``."""
    if not isinstance(raw, dict):
        raise UserError(f"{_where(path)}: a config is a TOML table")
    _check_keys(path, None, raw, _fields(_Head) + list(SECTIONS) + ["quick"])
    if "experiment" not in raw:
        raise UserError(f"{_where(path)}: missing key experiment (\"sweep\" or \"temporal\")")
    head = _build(path, None, _Head, {k: raw[k] for k in _fields(_Head) if k in raw})
    kind = head.experiment
    for section, cls in SECTIONS.items():
        if section in raw and not isinstance(raw[section], dict):
            _fail(path, None, section, "must be a table ([{0}] section)".format(section))
        _check_keys(path, section, raw.get(section, {}), _fields(cls))
    quick_raw = raw.get("quick", {})
    if not isinstance(quick_raw, dict):
        _fail(path, None, "quick", "must be a table of sections ([quick.data] …)")
    _check_keys(path, "quick", quick_raw, list(SECTIONS))
    for section, table in quick_raw.items():
        if not isinstance(table, dict):
            _fail(path, "quick", section, "must be a table")
        _check_keys(path, f"quick.{section}", table, _fields(SECTIONS[section]))
    if kind == "temporal" and "overtrain_epochs" in raw.get("train", {}):
        _fail(path, "train", "overtrain_epochs", "is for sweeps; a temporal run uses [temporal] overtrain")
    if kind == "sweep" and "temporal" in raw:
        _fail(path, None, "temporal", "is only for experiment = \"temporal\"")

    over = {s: {**raw.get(s, {}), **quick_raw.get(s, {})} for s in SECTIONS}
    if quick_raw and not quick:         # [quick]'s values are checked even without --quick
        _sections(path, kind, over, quick_raw)
    sections = _sections(path, kind, over, quick_raw) if quick else _sections(path, kind, raw, {})
    data = sections["data"]
    if data_dir is not None:
        data = dataclasses.replace(data, data_dir=str(Path(data_dir).expanduser().resolve()))
    elif data.data_dir is not None:
        base = Path(path).resolve().parent if path else Path.cwd()
        data = dataclasses.replace(data, data_dir=str((base / Path(data.data_dir).expanduser()).resolve()))
    sections["data"] = data
    if measures is not None:
        given = () if measures in ("none", "", ()) else measures
        sections["flatness"] = _build(path, "flatness", Flatness,
                                      {**dataclasses.asdict(sections["flatness"]), "measures": given})
    t = sections["temporal"]
    if kind == "sweep":
        sections["temporal"] = None
    elif t.rescale_epoch is not None and t.rescale_after is not None:
        _fail(path, "temporal", "rescale_after", "and rescale_epoch are exclusive: rescale at an absolute epoch "
              "or a number of epochs after the zero-error epoch, not both")
    elif (t.rescale_after or 0) > t.overtrain:
        _fail(path, "temporal", "rescale_after", f"({t.rescale_after}) is past the end of training "
              f"(overtrain = {t.overtrain} epochs after zero error); lower it")
    if kind == "sweep" and len(sections["sharpness"].zeta) != 1:
        _fail(path, "sharpness", "zeta", "must be one number in a sweep (ζ sweeps are temporal runs)")
    name = Path(path).stem if path else "experiment"
    exp = Experiment(kind, name, head.description, **sections, path=str(path) if path else None, quick=quick)
    _check_semantics(exp)
    return exp


def _sections(path, kind: str, tables: dict, quick_raw: dict) -> dict:
    """Every section built from its table over :func:`paper_defaults`."""
    tables = {s: tables.get(s, {}) for s in SECTIONS}
    data, model = tables["data"], tables["model"]
    dataset = data.get("dataset", _RUN.dataset)
    paper = paper_defaults(kind, dataset, model.get("name", _RUN.model))
    for key in ("train_size", "test_size"):
        if key not in data and key not in paper["data"]:
            _fail(path, "data", key, f"has no default for dataset {dataset!r}; set it")
    return {s: _build(path, s, cls, {**paper.get(s, {}), **tables[s]}, quick_raw.get(s, {}))
            for s, cls in SECTIONS.items()}


def _check_semantics(exp: Experiment) -> None:
    """Cross-checks that need the tfflat registries (optimizers, models) but no data."""
    from tfflat.data import input_shape
    from tfflat.training import optimizers

    path, t = exp.path, exp.train
    for name in t.optimizers:
        for key, args in (("optimizers", {}), ("opt_args", t.opt_args)):
            try:
                optimizers.resolve(name, t.learning_rate, **args)
            except UserError as err:
                _fail(path, "train", key, f"— {err}")
    try:
        exp.model_spec(input_shape(exp.data.dataset, exp.data.bits))
    except UserError as err:
        _fail(path, "model", "name", f"— {err}")
    if exp.flatness.measures:
        from tfflat.flatness.measures import plan

        try:
            plan(exp.flatness.measures, 0, exp.flatness.settings, defaults=exp.zoo_defaults())
        except UserError as err:
            _fail(path, "flatness", "settings", f"— {err}")
    if exp.temporal is not None and exp.temporal.rescales and exp.model.name == "resnet50":
        _fail(path, "temporal", "rescale_epoch", "α-rescaling needs a ReLU FCN (model fcn, fcn-small or fcn:…)")


def load(path, quick: bool = False, data_dir: str | None = None, measures=None) -> Experiment:
    """Read and validate a TOML config file (see the module docstring; ``measures``: see :func:`parse`)."""
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
    return parse(raw, p, quick=quick, data_dir=data_dir, measures=measures)


def check_data(exp: Experiment, task=None):
    """Load the task and check the largest split fits the data; returns the task.

    Raises a :class:`UserError` naming ``[data]`` when the sizes are impossible.
    """
    from tfflat.data import draw_indices
    from tfflat.training.run import load_task

    d = exp.data
    try:
        task = task or load_task(exp.run_config())
    except UserError as err:
        _fail(exp.path, "data", "data_dir" if d.dataset != "boolean" else "target", f"— {err}")
    try:
        draw_indices(task, d.train_size, max(d.attack_sizes), d.test_size, d.data_seed)
    except UserError as err:
        _fail(exp.path, "data", "attack_sizes/train_size/test_size", f"are impossible: {err}")
    return task
