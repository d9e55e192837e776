"""The flatness-measure zoo: every measure by name, with its paper, definition and expected invariance.

:func:`flatness_measures` computes any of them for a model on (x, y); :data:`MEASURES` holds one
:class:`Measure` per name. Each measure is a small function of (model, x, y, **settings) in its
own module (the docstrings there carry the definitions and the invariance derivations):

=============================  ==============================================  =========  ==========
name                           definition (module)                             layer-wise neuron-wise
=============================  ==============================================  =========  ==========
keskar_sharpness               Keskar et al. 2016 Def. 2.1 (sharpness)         no         no
hessian_spectral_norm          ‖∇²L‖₂ (hessian)                                no         no
hessian_trace                  Tr ∇²L, Hutchinson (hessian)                    no         no
hessian_log10_top_product      log10 Π top-k positive λ (hessian)              no         no
layer_hessian_spectral_norm    Σ_ℓ ‖H_ℓℓ‖₂, per layer (layers)                 no         no
layer_hessian_trace            Σ_ℓ Tr H_ℓℓ, per layer (layers)                 no         no
hessian_density                SLQ density, p·m₂ = ‖H‖_F² (density)            no         no
adaptive_sharpness_linf        max_{‖u‖∞≤ρ} L(w⊙(1+u)) − L(w) (adaptive)       yes        yes
adaptive_sharpness_l2          max_{‖u‖₂≤ρ} L(w⊙(1+u)) − L(w) (adaptive)       yes        yes
adaptive_sharpness_avg         E_u L(w⊙(1+u)) − L(w) (adaptive)                yes        yes
pac_bayes_flatness             1/σ′², N(0, σ²I) (pac_bayes)                    no         no
pac_bayes_mag_flatness         1/σ′², N(0, σ²w²+ε²) (pac_bayes)                ε = 0      ε = 0
pac_bayes_sharpness            1/α′², box α (pac_bayes)                        no         no
pac_bayes_mag_sharpness        1/α′², box α(|w|+ε) (pac_bayes)                 ε = 0      ε = 0
fisher_rao_norm                E⟨θ, ∇ℓ⟩² (fisher_rao)                          yes        yes
relative_flatness              ‖w‖² Tr H_ww of the output layer (relative)     yes        no
m_sharpness                    SAM's m-sharpness (m_sharpness)                 no         no
path_norm                      ℓ2 path norm with biases (norms)                yes        yes
spectral_norm_product          Π ‖W_i‖₂ (norms)                                yes        no
=============================  ==============================================  =========  ==========

Every measure sees the loss with the network in inference mode and leaves the model unchanged.
Every value grows with sharpness (or, for the norms, complexity): Jiang et al.'s PAC-Bayes
"flatness" measures are 1/σ′², larger for sharper networks, as the rest.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from tfflat.errors import UserError


@dataclass(frozen=True)
class Measure:
    """One measure of the zoo.

    Attributes:
      name: its registry name.
      compute: ``compute(model, x, y, **settings) -> {"value": float, …details}``.
      paper: the reference.
      definition: the formula, in one line.
      invariant_layerwise, invariant_neuronwise: whether the definition (at the default settings) is
        exactly invariant under layer-wise / neuron-wise α-rescaling of a ReLU network.
      why: the one-line derivation.
      invariance: ``invariance(settings) -> (layer-wise, neuron-wise)`` for the given settings
        (default: the two constants).
      data: whether the measure depends on (x, y) (the norms do not).
    """

    name: str
    compute: Callable[..., dict]
    paper: str
    definition: str
    invariant_layerwise: bool
    invariant_neuronwise: bool
    why: str
    invariance: Callable[[dict], tuple[bool, bool]] | None = field(default=None, compare=False)
    data: bool = True

    def settings(self) -> dict:
        """The measure's settings and their defaults (``seed`` and ``eval_batch`` included where used)."""
        sig = inspect.signature(self.compute)
        return {k: p.default for k, p in list(sig.parameters.items())[3:]
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def expected(self, settings: dict | None = None) -> tuple[bool, bool]:
        """(layer-wise, neuron-wise) invariance expected from the definition at these settings."""
        full = {**self.settings(), **(settings or {})}
        if self.invariance is not None:
            return tuple(bool(b) for b in self.invariance(full))
        return self.invariant_layerwise, self.invariant_neuronwise

    def info(self) -> dict:
        return {"paper": self.paper, "definition": self.definition, "invariant_layerwise": self.invariant_layerwise,
                "invariant_neuronwise": self.invariant_neuronwise, "why": self.why,
                "settings": {k: v for k, v in self.settings().items()}}


# ---- adapters from the modules' functions to (model, x, y, **settings) -> dict ----------------------

def _keskar(model, x, y, zeta: float = 1e-4, method: str = "sgd", lr: float = 1e-3, epochs: int = 100,
            batch_size: int = 32, seed: int = 0, eval_batch: int | None = None) -> dict:
    from tfflat.flatness.sharpness import sharpness

    r = sharpness(model, x, y, zeta=zeta, method=method, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed,
                  eval_batch=eval_batch)
    return {"value": r.sharpness, "log10": r.log10_sharpness, "loss": r.loss, "max_loss": r.max_loss,
            "corner_loss": r.corner_loss, "converged": bool(r.converged)}


def _hessian_norm(model, x, y, seed: int = 0, eval_batch: int | None = None) -> dict:
    from tfflat.flatness.hessian import spectral_norm
    from tfflat.flatness.landscape import full_hvp

    h = full_hvp(model, x, y, eval_batch)
    return {"value": spectral_norm(h, seed=seed), "matvecs": h.matvecs}


def _hessian_trace(model, x, y, probes: int = 100, seed: int = 0, eval_batch: int | None = None) -> dict:
    from tfflat.flatness.hessian import hutchinson_trace
    from tfflat.flatness.landscape import full_hvp

    h = full_hvp(model, x, y, eval_batch)
    trace, stderr = hutchinson_trace(h, probes, seed)
    return {"value": trace, "stderr": stderr, "probes": int(probes), "matvecs": h.matvecs}


def _hessian_top(model, x, y, top_k: int = 50, seed: int = 0, eval_batch: int | None = None) -> dict:
    import numpy as np

    from tfflat.flatness.hessian import top_eigenvalues
    from tfflat.flatness.landscape import full_hvp

    h = full_hvp(model, x, y, eval_batch)
    k = min(int(top_k), h.size)
    values = top_eigenvalues(h, k, seed)
    positive = values[values > 0]
    return {"value": float(np.sum(np.log10(positive))) if len(positive) else -math.inf,
            "eigenvalues": [float(v) for v in values], "positive": int(len(positive)), "top_k": k,
            "matvecs": h.matvecs}


def _layer_norms(model, x, y, seed: int = 0, eval_batch: int | None = None) -> dict:
    from tfflat.flatness.layers import layer_hessian_norms

    return layer_hessian_norms(model, x, y, seed, eval_batch=eval_batch)


def _layer_traces(model, x, y, probes: int = 100, seed: int = 0, eval_batch: int | None = None) -> dict:
    from tfflat.flatness.layers import layer_hessian_traces

    return layer_hessian_traces(model, x, y, probes, seed, eval_batch=eval_batch)


def _density(model, x, y, steps: int = 64, probes: int = 2, seed: int = 0, grid: int = 512,
             eval_batch: int | None = None) -> dict:
    from tfflat.flatness.density import hessian_density

    return hessian_density(model, x, y, steps, probes, seed, grid, eval_batch=eval_batch)


def _adaptive(norm):
    from tfflat.flatness.adaptive import DEFAULT_RHO, DEFAULT_STEPS

    def compute(model, x, y, rho: float = DEFAULT_RHO[norm], steps: int = DEFAULT_STEPS,
                eval_batch: int | None = None) -> dict:
        from tfflat.flatness.adaptive import adaptive_sharpness

        return adaptive_sharpness(model, x, y, rho, norm, steps, eval_batch=eval_batch)

    return compute


def _average(model, x, y, rho: float = 0.1, draws: int = 100, seed: int = 0, eval_batch: int | None = None) -> dict:
    from tfflat.flatness.adaptive import average_sharpness

    return average_sharpness(model, x, y, rho, draws, seed, eval_batch=eval_batch)


def _pac_noise(magnitude):
    from tfflat.flatness import pac_bayes as pb

    if magnitude:
        def compute(model, x, y, epsilon: float = pb.EPSILON, threshold: float = pb.THRESHOLD, loss: str = "error",
                    draws: int = pb.DRAWS, seed: int = 0, rtol: float = pb.RTOL, eval_batch: int | None = None):
            return pb.pac_bayes_flatness(model, x, y, True, epsilon, threshold, loss, draws, seed, rtol,
                                         eval_batch=eval_batch)
    else:
        def compute(model, x, y, threshold: float = pb.THRESHOLD, loss: str = "error", draws: int = pb.DRAWS,
                    seed: int = 0, rtol: float = pb.RTOL, eval_batch: int | None = None):
            return pb.pac_bayes_flatness(model, x, y, False, 0.0, threshold, loss, draws, seed, rtol,
                                         eval_batch=eval_batch)
    return compute


def _pac_box(magnitude):
    from tfflat.flatness import pac_bayes as pb

    if magnitude:
        def compute(model, x, y, epsilon: float = pb.EPSILON, threshold: float = pb.THRESHOLD, loss: str = "error",
                    steps: int = pb.ASCENT_STEPS, rtol: float = pb.RTOL, eval_batch: int | None = None):
            return pb.pac_bayes_sharpness(model, x, y, True, epsilon, threshold, loss, steps, rtol,
                                          eval_batch=eval_batch)
    else:
        def compute(model, x, y, threshold: float = pb.THRESHOLD, loss: str = "error", steps: int = pb.ASCENT_STEPS,
                    rtol: float = pb.RTOL, eval_batch: int | None = None):
            return pb.pac_bayes_sharpness(model, x, y, False, 0.0, threshold, loss, steps, rtol,
                                          eval_batch=eval_batch)
    return compute


def _fisher_rao(model, x, y, eval_batch: int | None = None) -> dict:
    from tfflat.flatness.fisher_rao import fisher_rao_norm

    return fisher_rao_norm(model, x, y, eval_batch=eval_batch)


def _relative(model, x, y, probes: int = 100, seed: int = 0, eval_batch: int | None = None) -> dict:
    from tfflat.flatness.relative import relative_flatness

    return relative_flatness(model, x, y, probes, seed, eval_batch=eval_batch)


def _m_sharpness(model, x, y, rho: float = 0.05, m: int = 32, steps: int = 1, seed: int = 0,
                 eval_batch: int | None = None) -> dict:
    from tfflat.flatness.m_sharpness import m_sharpness

    return m_sharpness(model, x, y, rho, m, steps, seed, eval_batch=eval_batch)


def _path_norm(model, x, y) -> dict:
    from tfflat.flatness.norms import path_norm

    return path_norm(model)


def _spectral_product(model, x, y) -> dict:
    from tfflat.flatness.norms import spectral_norm_product

    return spectral_norm_product(model)


_HESSIAN_WHY = "H → D⁻¹HD⁻¹ under w → Dw: its spectrum is not preserved"
_MAG_WHY = ("noise σ|w|ξ (box α|w|) scales with w, exactly invariant for ε = 0; Jiang's ε = 10⁻³ adds isotropic "
            "noise, invariant only approximately")


def _eps_zero(settings):
    zero = float(settings.get("epsilon", 0.0)) == 0.0
    return zero, zero


_ENTRIES = [
    Measure("keskar_sharpness", _keskar, "Keskar et al. 2016, Def. 2.1 (paper App. E eq. 8)",
            "100 (max_{|Δ_i| ≤ ζ(|w_i|+1)} L(w+Δ) − L(w)) / (1 + L(w))", False, False,
            "the box's +1 and the ascent's steps ∝ ∇L are not scaled with w"),
    Measure("hessian_spectral_norm", _hessian_norm, "paper App. E; Keskar et al. 2016", "‖∇²L(w)‖₂",
            False, False, _HESSIAN_WHY),
    Measure("hessian_trace", _hessian_trace, "Hutchinson 1989; PyHessian (Yao et al. 2020)", "Tr ∇²L(w)",
            False, False, "Tr D⁻¹HD⁻¹ = Σ H_ii / d_i² ≠ Tr H"),
    Measure("hessian_log10_top_product", _hessian_top, "Wu et al. 2017; Zhang et al. 2018; paper App. E",
            "log10 Π_{top-k λ > 0} λ", False, False, _HESSIAN_WHY),
    Measure("layer_hessian_spectral_norm", _layer_norms, "PyHessian layer-wise spectra (Yao et al. 2020)",
            "Σ_ℓ ‖∂²L/∂w_ℓ²‖₂ (all layers reported)", False, False, "H_ℓℓ → D_ℓ⁻¹H_ℓℓD_ℓ⁻¹"),
    Measure("layer_hessian_trace", _layer_traces, "PyHessian layer-wise traces (Yao et al. 2020)",
            "Σ_ℓ Tr ∂²L/∂w_ℓ² (all layers reported)", False, False, "Tr H_ℓℓ → Σ (H_ℓℓ)_ii / d_i²"),
    Measure("hessian_density", _density, "Ghorbani et al. 2019 §2; PyHessian SLQ (Yao et al. 2020)",
            "SLQ density of λ(∇²L); value p·m₂ ≈ ‖∇²L‖_F²", False, False, _HESSIAN_WHY),
    Measure("adaptive_sharpness_linf", _adaptive("linf"), "Andriushchenko et al. 2023 eq. 1; Kwon et al. 2021",
            "max_{‖u‖∞ ≤ ρ} L(w ⊙ (1+u)) − L(w)", True, True,
            "L(Dw ⊙ (1+u)) = L(w ⊙ (1+u)) for every u, and ∇_u is unchanged"),
    Measure("adaptive_sharpness_l2", _adaptive("l2"), "Andriushchenko et al. 2023 eq. 1; Kwon et al. 2021",
            "max_{‖u‖₂ ≤ ρ} L(w ⊙ (1+u)) − L(w)", True, True,
            "L(Dw ⊙ (1+u)) = L(w ⊙ (1+u)) for every u, and ∇_u is unchanged"),
    Measure("adaptive_sharpness_avg", _average, "Andriushchenko et al. 2023 eq. 2",
            "E_{u~N(0,ρ²I)} L(w ⊙ (1+u)) − L(w)", True, True, "L(Dw ⊙ (1+u)) = L(w ⊙ (1+u)) for every draw u"),
    Measure("pac_bayes_flatness", _pac_noise(False), "Jiang et al. 2020 eq. 53 (pacbayes.flatness)",
            "1/σ′², σ′ = max{σ : E_{u~N(0,σ²I)} L(w+u) − L(w) ≤ 0.1}", False, False,
            "isotropic noise u becomes D⁻¹u in the original coordinates"),
    Measure("pac_bayes_mag_flatness", _pac_noise(True), "Jiang et al. 2020 eq. 61 (pacbayes.mag.flatness)",
            "1/σ′², σ′ = max{σ : E_{u_i~N(0,σ²w_i²+ε²)} L(w+u) − L(w) ≤ 0.1}", False, False, _MAG_WHY,
            invariance=_eps_zero),
    Measure("pac_bayes_sharpness", _pac_box(False), "Jiang et al. 2020 App. C.3 (sharpness.flatness)",
            "1/α′², α′ = max{α : max_{|u_i| ≤ α} L(w+u) − L(w) ≤ 0.1}", False, False,
            "the box |u_i| ≤ α is not scaled with w"),
    Measure("pac_bayes_mag_sharpness", _pac_box(True), "Jiang et al. 2020 App. C.4 (sharpness.mag.flatness)",
            "1/α′², α′ = max{α : max_{|u_i| ≤ α(|w_i|+ε)} L(w+u) − L(w) ≤ 0.1}", False, False, _MAG_WHY,
            invariance=_eps_zero),
    Measure("fisher_rao_norm", _fisher_rao, "Liang et al. 2019 §2", "sqrt E_S ⟨θ, ∇_θ ℓ(f_θ(x), y)⟩²", True, True,
            "⟨Dθ, D⁻¹∇ℓ(θ)⟩ = ⟨θ, ∇ℓ(θ)⟩ per example"),
    Measure("relative_flatness", _relative, "Petzka et al. 2021, Def. 3 (κ_Tr)",
            "Σ_{s,s'} ⟨w_s, w_s'⟩ Tr H_{s,s'} of the output layer's kernel", True, False,
            "layer-wise α⁻²·α² cancels; per-unit α_u of the last hidden layer weights ‖w_u‖² and H_uu unequally"),
    Measure("m_sharpness", _m_sharpness, "Foret et al. 2021 §4.1 (SAM's m-sharpness), ε̂ of eq. 2",
            "mean over minibatches B of size m of max_{‖ε‖₂ ≤ ρ} L_B(w+ε) − L_B(w)", False, False,
            "the ℓ2 ball in w is not scaled with w"),
    Measure("path_norm", _path_norm, "Neyshabur et al. 2015 (ℓ2 path norm); Jiang et al. 2020 eq. 44",
            "sqrt Σ_paths Π_{e ∈ path} w_e² (biases as paths)", True, True,
            "every path through a unit carries α (in) and 1/α (out)", data=False),
    Measure("spectral_norm_product", _spectral_product, "Bartlett et al. 2017; Jiang et al. 2020 eq. 32",
            "Π_i ‖W_i‖₂ over the kernels", True, False,
            "‖αW_i‖ ‖W_{i+1}/α‖ cancels; per-unit scalings change singular values", data=False),
]

MEASURES: dict[str, Measure] = {m.name: m for m in _ENTRIES}


def names(measures="all") -> list[str]:
    """The measure names selected by ``"all"``, one name, or a list of names (validated)."""
    if measures == "all" or measures is None:
        return list(MEASURES)
    chosen = [measures] if isinstance(measures, str) else list(measures)
    chosen = [m.strip() for c in chosen for m in str(c).split(",") if m.strip()]
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown:
        import difflib

        near = [m for u in unknown for m in difflib.get_close_matches(u, list(MEASURES), n=1)]
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise UserError(f"unknown measure(s) {', '.join(unknown)}; {hint}choose from: all, {', '.join(MEASURES)}")
    if not chosen:
        raise UserError("no measure chosen; name one or more, or 'all'")
    return list(dict.fromkeys(chosen))


def resolve_settings(selected: list[str], settings: dict | None) -> dict[str, dict]:
    """Per-measure settings from ``settings``: ``{measure: {param: value}}`` entries apply to that
    measure; ``{param: value}`` entries to every selected measure that has the parameter."""
    out = {name: {} for name in selected}
    specific = {}
    for key, value in (settings or {}).items():
        if key in MEASURES:
            if not isinstance(value, dict):
                raise UserError(f"settings for measure {key} must be a mapping of setting to value")
            allowed = MEASURES[key].settings()
            bad = [k for k in value if k not in allowed]
            if bad:
                raise UserError(f"measure {key} has no setting {', '.join(bad)}; it has {', '.join(allowed) or 'none'}")
            if key in out:
                specific[key] = value
            continue
        takers = [n for n in selected if key in MEASURES[n].settings()]
        if not takers:
            known = sorted({k for n in selected for k in MEASURES[n].settings()})
            raise UserError(f"no selected measure has a setting {key!r}; settings: {', '.join(known) or 'none'} "
                            "(or give {measure: {setting: value}})")
        for n in takers:
            out[n][key] = value
    for key, value in specific.items():          # measure-specific entries win over global ones
        out[key].update(value)
    return out


def plan(measures="all", seed: int = 0, settings: dict | None = None, eval_batch: int | None = None,
         defaults: dict[str, dict] | None = None) -> dict[str, dict]:
    """The complete settings each selected measure runs with: its signature's defaults, under
    ``defaults`` (``{measure: {setting: value}}``, e.g. Table 1's sharpness settings for a run's task),
    under ``settings`` (as for :func:`resolve_settings`), with ``seed`` and ``eval_batch`` for the
    measures that take them. What :func:`flatness_measures` records as each result's ``settings``."""
    selected = names(measures)
    per = resolve_settings(selected, settings)
    base = resolve_settings(selected, {k: v for k, v in (defaults or {}).items() if k in selected})
    out = {}
    for name in selected:
        m = MEASURES[name]
        full = {**m.settings(), **base[name], **per[name]}
        if "seed" in full and "seed" not in per[name]:
            full["seed"] = int(seed)
        if "eval_batch" in full and eval_batch is not None and per[name].get("eval_batch") is None:
            full["eval_batch"] = int(eval_batch)
        out[name] = full
    return out


def flatness_measures(model, x, y=None, measures="all", seed: int = 0, settings: dict | None = None, *,
                      head=None, eval_batch: int | None = None, errors: str = "raise",
                      callback: Callable[[str, dict], None] | None = None, **more) -> dict:
    """Compute measures of the zoo for ``model`` on (x, y); the model is left unchanged.

    Args:
      model: a built Keras classifier (:mod:`tfflat.models.heads`: one logit, a final sigmoid, two
        outputs or K classes; evaluated with ``training=False``). Every measure is computed on the
        network returning the head's pre-activation logits (a final sigmoid/softmax bypassed).
      x, y: the data S: inputs (n, …) and labels (n,) — arrays, tensors, or a ``tf.data.Dataset`` of
        (x, y) as ``x``.
      measures: ``"all"``, a name, a comma-separated string or a list of names (see :data:`MEASURES`).
      seed: passed to every measure that draws random numbers (probes, noise, minibatches).
      settings: ``{measure: {setting: value}}`` and/or ``{setting: value}`` (applies to every
        selected measure that has it); see ``MEASURES[name].settings()``.
      head: ``None`` (read from the model) or a head name (see :func:`tfflat.models.heads.detect`).
      eval_batch: examples per forward chunk, for every measure.
      errors: ``"raise"``: a measure that does not apply (a :class:`UserError`, e.g. the path norm of a
        BatchNorm network) stops the call; ``"record"``: its entry is ``{"value": None, "error": message}``
        and the others are still computed.
      callback: ``callback(name, result)`` after each measure.
      **more: further settings, as in ``settings`` (e.g. ``rho=0.1`` or ``m_sharpness={"m": 64}``).
    Returns:
      ``{name: {"value": float, …details, "invariant_layerwise": bool, "invariant_neuronwise": bool,
      "seconds": float, "settings": {…}}}`` in the order asked; the two booleans are the invariance
      under α-rescaling expected from the definition at these settings (:func:`invariance_table`
      measures it).
    """
    if errors not in ("raise", "record"):
        raise UserError(f"errors must be 'raise' or 'record', got {errors!r}")
    from tfflat.data.arrays import as_arrays
    from tfflat.flatness.landscape import logit_network

    planned = plan(measures, seed, {**(settings or {}), **more}, eval_batch)
    x, y = as_arrays(x, y, model=model)
    _, model = logit_network(model, x, head)
    out = {}
    for name, used in planned.items():
        m = MEASURES[name]
        t0 = time.perf_counter()
        try:
            result = m.compute(model, x, y, **used)
        except UserError as exc:
            if errors == "raise":
                raise
            result = {"value": None, "error": str(exc)}
        value = result["value"]
        layerwise, neuronwise = m.expected(used)
        result = {"value": None if value is None else float(value),
                  **{k: v for k, v in result.items() if k != "value"},
                  "invariant_layerwise": layerwise, "invariant_neuronwise": neuronwise,
                  "seconds": time.perf_counter() - t0, "settings": used}
        out[name] = result
        if callback is not None:
            callback(name, result)
    return out


def measure_info(measures="all") -> dict:
    """The registry's metadata for the selected measures: paper, definition, expected invariance, settings."""
    return {name: MEASURES[name].info() for name in names(measures)}


def finite(v):
    """``v`` (nested dicts, lists, numpy scalars) with every non-finite number replaced by ``None``."""
    if isinstance(v, dict):
        return {str(k): finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(x) for x in v]
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):        # numpy arrays and scalars
        v = v.tolist()
        if isinstance(v, list):
            return finite(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def strict(results: dict) -> dict:
    """``results`` of :func:`flatness_measures` as strict JSON (:func:`finite`); a measure whose value is
    not finite, or that did not apply, says why in ``reason``."""
    out = {}
    for name, res in results.items():
        rec = finite(res)
        value = res.get("value")
        if value is not None and not math.isfinite(float(value)):
            why = NONFINITE.get(name, "")
            rec["reason"] = f"value is {float(value)}, not a number JSON can hold" + (f": {why}" if why else "")
        elif value is None and res.get("error"):
            rec["reason"] = res["error"]
        out[name] = rec
    return out


NONFINITE = {"hessian_log10_top_product": "no positive eigenvalue among the top k (log10 of an empty product)",
             "spectral_norm_product": "the product of the kernels' norms overflows"}
