"""Temporal runs (Figs. 5, S11, S13, S14, S15): sharpness and log P(f) every k epochs.

From initialisation through the zero-error epoch and ``overtrain`` further epochs, every ``every``
epochs (and at epoch 0, the zero-error epoch and the last epoch) the network's sharpness (one
record per ζ of a ζ sweep, Fig. S13), Hessian measures (Fig. S15, when asked) and log P(f) are
measured. With ``rescale_epoch`` (an absolute epoch) or ``rescale_after`` (epochs after the
zero-error epoch) set, the layer ``rescale_layer`` is α-rescaled (App. F, eq. 9, in the config's
``rescale_direction``; see :class:`~tfflat.experiments.config.Temporal`) at that epoch, after its
measurement, then measured again (``after_rescale`` true) and trained on (§5.4). Records are appended
to a JSON-lines file as they are made and a rerun resumes; with a TensorBoard directory every new
measurement is also written as scalars (:mod:`tfflat.experiments.tensorboard`, step = epoch).
"""

from __future__ import annotations

import time
from typing import Callable

from tfflat import runs
from tfflat.errors import IncompleteError
from tfflat.experiments import results
from tfflat.experiments.sweep import Point, base_record, grid, sidecar


def record_key(point: Point, epoch: int, zeta, after_rescale: bool) -> str:
    """``sgd/A0/seed0/epoch140/zeta0.0001`` (``…/rescaled`` for the measurement just after rescaling)."""
    z = "none" if zeta is None else f"{zeta:g}"
    return f"{point.name}/epoch{epoch}/zeta{z}" + (
        "/rescaled" if after_rescale else "")


def run(exp, out, tensorboard: str | None = None, task=None,
        progress: Callable[[int, int | None, str], None] | None = None) -> dict:
    """Run (or resume) every trajectory of a temporal config; returns a summary per trajectory."""
    from tfflat.experiments.config import check_data
    from tfflat.experiments.session import Session

    t0 = time.perf_counter()
    task = check_data(exp, task)
    done = results.open_results(exp, out, sidecar(exp, task))
    session = None
    summaries = []
    for point in grid(exp):
        session = session or Session(exp, task, kernel_cache=results.kernel_cache(out))
        summaries.append(run_trajectory(session, point, done, out, tensorboard, progress))
    summary = {"trajectories": summaries, "records": len(results.finished_keys(out)), "out": str(out),
               "seconds": time.perf_counter() - t0}
    missed = [s for s in summaries if s["rescale_missed"] or s["zero_error_epoch"] is None]
    if missed:
        s = missed[0]
        why = (f"no zero-error epoch within {exp.train.max_epochs} epochs (raise [train] max_epochs)"
               if s["zero_error_epoch"] is None else
               f"training ended at epoch {s['last_epoch']}, before the rescaling epoch "
               f"{s['rescale_epoch']} (raise [temporal] overtrain)")
        raise IncompleteError(f"{s['key']}: {why}; the measurements made are in {out}")
    return summary


def run_trajectory(session, point: Point, done: set[str], out, tensorboard=None, progress=None) -> dict:
    """Train one (optimizer, |A|, seed) trajectory, measuring as the module docstring says."""
    from tfflat.experiments.session import reached_zero_error
    from tfflat.experiments.tensorboard import ScalarWriter, tags

    exp = session.exp
    t = exp.temporal
    zetas = exp.sharpness.zeta if exp.sharpness.enabled else [None]
    writer = ScalarWriter(tensorboard) if tensorboard else None
    run_name = f"{point.optimizer}_A{point.attack_size}_seed{point.seed}"
    state = {"zero": None, "rescaled": False, "rescale_at": t.rescale_epoch}
    base = base_record(exp, point)

    def measure(epoch, rec, model, after_rescale):
        keys = [record_key(point, epoch, z, after_rescale) for z in zetas]
        if all(k in done for k in keys):
            return
        common, sharp = session.measure(model, seed=point.seed)
        rows = sharp or [{"zeta": None}]
        for key, row in zip(keys, rows):
            if key in done:
                continue
            r = {"key": key, **base, "epoch": epoch, "zero_error_epoch": state["zero"],
                 "after_rescale": after_rescale, "rescale_epoch": state["rescale_at"],
                 **rescale_fields(t),
                 "train_accuracy": rec["acc_S"], "attack_accuracy": rec["acc_A"], "test_accuracy": rec["acc_E"],
                 "generalization_error": None if rec["acc_E"] is None else 1.0 - rec["acc_E"],
                 "train_loss": rec["loss_S"], **common, **row}
            runs.append_jsonl(out, r)
            done.add(key)
            if writer is not None:
                writer.write(run_name, epoch, tags(r, common=key == keys[0]))
        if progress:
            progress(epoch, None, f"{point.name} zero-error epoch {state['zero']}")

    def callback(epoch, rec, model):
        if state["zero"] is None and reached_zero_error(rec, exp.train.stop_on):
            state["zero"] = epoch
            if t.rescale_after is not None:
                state["rescale_at"] = epoch + t.rescale_after
        end = (state["zero"] is not None and epoch >= state["zero"] + t.overtrain) or \
            epoch == exp.train.max_epochs
        rescale_now = epoch == state["rescale_at"]
        if epoch % t.every == 0 or epoch == state["zero"] or end or rescale_now:
            measure(epoch, rec, model, state["rescaled"])
        if rescale_now:
            apply_rescaling(model, t)
            state["rescaled"] = True
            measure(epoch, _after(session.splits(point.attack_size, point.seed), model, rec), model, True)
        return False

    try:
        _, result = session.train(point.optimizer, point.attack_size, point.seed, overtrain=t.overtrain,
                                  callback=callback)
    finally:
        if writer is not None:
            writer.close()
    return {"key": point.name, "zero_error_epoch": result.zero_error_epoch, "last_epoch": result.epochs,
            "rescale_epoch": state["rescale_at"],
            "rescale_missed": t.rescales and not state["rescaled"]}


def _after(splits, model, rec: dict) -> dict:
    """The accuracy record of ``model`` right after rescaling (the function should be unchanged)."""
    from tfflat.training import evaluate, predict_logits
    from tfflat.training.loop import eval_inputs

    return {**rec, **evaluate(predict_logits(model, eval_inputs(splits)), splits)}


# ---------------------------------------------------------------- α-rescaling
def apply_rescaling(model, temporal) -> dict:
    """α-rescale ``model`` in place as ``[temporal]`` says: hidden layer ``rescale_layer``,
    (W_i, b_i, W_{i+1}) → (cW_i, cb_i, W_{i+1}/c) with c = :attr:`~tfflat.experiments.config.Temporal.rescale_factor`
    (α for ``"eq9"``, 1/α for ``"inverse"``, App. F eq. 9)."""
    from tfflat.rescale import rescale_layer

    return rescale_layer(model, temporal.rescale_layer, temporal.rescale_factor)


def rescale_fields(temporal) -> dict:
    """The rescaling's record fields: the paper's α, its direction and layer, and the factor c on W_i."""
    if not temporal.rescales:
        return {"alpha": None}
    return {"alpha": temporal.alpha, "rescale_direction": temporal.rescale_direction,
            "rescale_layer": temporal.rescale_layer, "rescale_factor": temporal.rescale_factor}
