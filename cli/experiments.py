"""``tfflat sweep`` and ``tfflat temporal``: the paper's experiments from a config file."""

from __future__ import annotations

import click

from .devices import devices_option, scope
from .output import Progress, emit

CONFIG_HELP = "TOML config (see configs/: one per figure of the paper)."


MEASURES_HELP = ("Measures of the flatness zoo at every point: all, NAME,... or none (overrides [flatness] "
                 "measures; see `tfflat flatness --list`).")


def _load(config, quick, data_dir, measures=None):
    from tfflat.experiments import config as cfg

    return cfg.load(config, quick=quick, data_dir=data_dir, measures=measures)


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Results file (JSON lines; a sidecar RESULTS.meta.json is written next to it). "
                   "Default: results/<config name>[-quick].jsonl. Rerunning resumes.")
@click.option("--data-dir", type=click.Path(), default=None,
              help="Local data files; overrides the config's data_dir (default: tensorflow-datasets).")
@click.option("--shard", default=None, metavar="I/N", help="Run only the I-th of N interleaved shares (1-based).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Worker processes on this machine (CPU threads are split between them; with GPUs each is "
                   "pinned to one, round robin: --workers N for N GPUs).")
@click.option("--tensorboard", type=click.Path(file_okay=False), default=None,
              help="Also write every record as TensorBoard scalars into this folder (one run per optimizer, "
                   "seed and overtraining epoch; step = |A|).")
@devices_option
@click.option("--quick", is_flag=True, help="Apply the config's [quick] section (small sizes, minutes on a laptop).")
@click.option("--measures", default=None, metavar="all|NAME,...|none", help=MEASURES_HELP)
@click.option("--stack/--no-stack", default=True, show_default=True,
              help="Train and measure the points of a plain-SGD FCN sweep that share a seed as one stack (the "
                   "same records to float rounding, faster); --no-stack: point by point.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def sweep(config, out, data_dir, shard, workers, tensorboard, devices, quick, measures, stack, as_json):
    """Attack-set sweep: train every (optimizer, |A|, seed) point to zero error and measure
    sharpness, Hessian measures, log P(f) and (--measures) the flatness zoo there (Figs. 3, 4, S9, S16–S24)."""
    from tfflat.experiments import results
    from tfflat.experiments import sweep as sw

    exp = _load(config, quick, data_dir, measures)
    if exp.kind != "sweep":
        from tfflat.errors import UserError
        raise UserError(f"{config} is a {exp.kind} config; run it with `tfflat {exp.kind} {config}`")
    shard_spec = sw.parse_shard(shard)
    out = out or str(results.default_out(exp))
    bar = Progress("sweep", unit="points")

    def progress(done, total, info):
        bar.total = total
        bar.update(done, info)

    try:
        with scope(devices):          # this process (workers = 1, or the kernel before the workers start)
            s = sw.run(exp, out, shard_spec, workers=workers, progress=progress, tensorboard=tensorboard,
                       devices=devices, stack=stack)
    finally:
        bar.close()
    emit(s, as_json, [
        f"{s['points']} points{f' (shard {shard})' if shard else ''}: {s['skipped']} already done, "
        + (f"{s['elsewhere']} being run by another process, " if s.get("elsewhere") else "") +
        f"{s['run']} run in {s['seconds']:.1f}s with {s['workers']} worker(s)"
        + (f" on GPU(s) {', '.join(map(str, s['pinned']))}" if any(s.get("pinned") or []) else ""),
        f"results: {out} ({s['records']} records)",
        f"figures and correlations: tfflat plot {out}" + (f";  tensorboard --logdir {tensorboard}" if tensorboard else "")])


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Results file (JSON lines); default results/<config name>[-quick].jsonl. Rerunning resumes.")
@click.option("--data-dir", type=click.Path(), default=None,
              help="Local data files; overrides the config's data_dir (default: tensorflow-datasets).")
@click.option("--tensorboard", type=click.Path(file_okay=False), default=None,
              help="Also write every measurement as TensorBoard scalars into this folder.")
@click.option("--quick", is_flag=True, help="Apply the config's [quick] section.")
@click.option("--measures", default=None, metavar="all|NAME,...|none", help=MEASURES_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def temporal(config, out, data_dir, tensorboard, quick, measures, as_json):
    """Sharpness and log P(f) every k epochs through zero error and overtraining, with optional
    α-rescaling and ζ sweeps (Figs. 5, S11, S13–S15)."""
    from tfflat.errors import UserError
    from tfflat.experiments import results
    from tfflat.experiments import temporal as tp

    exp = _load(config, quick, data_dir, measures)
    if exp.kind != "temporal":
        raise UserError(f"{config} is a {exp.kind} config; run it with `tfflat {exp.kind} {config}`")
    out = out or str(results.default_out(exp))
    bar = Progress("temporal", unit="epochs")
    try:
        s = tp.run(exp, out, tensorboard=tensorboard, progress=lambda e, _t, info: bar.update(e, info))
    finally:
        bar.close()
    lines = [f"{t['key']}: zero-error epoch {t['zero_error_epoch']}, trained to epoch {t['last_epoch']}"
             for t in s["trajectories"]]
    lines += [f"results: {out} ({s['records']} records, {s['seconds']:.1f}s)",
              f"figures: tfflat plot {out}" + (f";  tensorboard --logdir {tensorboard}" if tensorboard else "")]
    emit(s, as_json, lines)
