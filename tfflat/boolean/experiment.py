"""The whole Boolean experiment in one call: sample P(f), measure the top functions, draw the figures.

An output folder ``OUT`` holds (every file written atomically; a rerun resumes):

* ``OUT/sampling/`` — the sampler's checkpoints (``state.json``, ``chunks/*.npz``);
* ``OUT/functions.csv`` — ``function,count,log10_prior``, most frequent first;
* ``OUT/top.jsonl`` — one row per measured top function, appended as each finishes;
* ``OUT/top.csv`` — the top-function table (:data:`tfflat.boolean.top.COLUMNS`);
* ``OUT/boolean.json`` — the summary: settings, samples, distinct, seconds, samples/s, correlations;
* the figures of :mod:`tfflat.boolean.plots` (PNG + PDF).
"""

from __future__ import annotations

from typing import Callable

from tfflat import defaults
from tfflat.errors import UserError

SAMPLING_DIR, TOP_ROWS = "sampling", "top.jsonl"


def run(out, samples: int = defaults.BOOLEAN_SAMPLES, top: int = 10, seed: int = 0,
        bits: int = defaults.BOOLEAN_BITS, min_count: int = 1, widths=defaults.FCN_PRESETS["fcn"], overtrain: int = 0,
        likelihood: str = "heaviside", figures: bool = True, sample_progress: Callable | None = None,
        top_progress: Callable | None = None) -> dict:
    """Sample ``samples`` networks, write the table, measure the ``top`` most frequent functions.

    Args:
      out: output folder (created; a rerun with the same settings resumes).
      samples: weight samples (paper: 10⁸).
      top: how many of the most frequent functions to train and measure (paper: 1000; 0: none).
      seed: the weight stream of the sampler and the seeds of the trained networks.
      bits: n (1 … 20).
      min_count: functions seen fewer times are left out of ``functions.csv``.
      widths: hidden widths of the FCN (paper: 40, 40).
      overtrain: SGD epochs after the zero-error epoch before measuring flatness (paper: 0).
      likelihood: EP likelihood of the GP check (``heaviside`` or ``probit``).
      figures: draw the figures.
      sample_progress, top_progress: progress callbacks (see :func:`sampling.sample`, :func:`top.measure`).
    Returns:
      The summary written to ``OUT/boolean.json``.
    """
    from tfflat import runs
    from tfflat.boolean import plots, sampling
    from tfflat.boolean import top as top_mod
    from tfflat.boolean.table import write_table
    from tfflat.prior.ep import LIKELIHOODS

    sampling.check_settings(bits, samples, widths)
    if not isinstance(top, int) or top < 0:
        raise UserError(f"--top must be a non-negative integer, got {top}")
    if min_count < 1:
        raise UserError(f"--min-count must be ≥ 1, got {min_count}")
    if likelihood not in LIKELIHOODS:
        raise UserError(f"--likelihood must be {' or '.join(LIKELIHOODS)}, got {likelihood!r}")
    out = runs.ensure_dir(out)
    table = sampling.sample(samples, bits, widths, seed=seed, state_dir=out / SAMPLING_DIR,
                           progress=sample_progress)
    rows_written = write_table(out / plots.TABLE, table, min_count)
    summary = {
        "bits": bits, "widths": list(widths), "sigma_w": table.config["sigma_w"],
        "sigma_b": table.config["sigma_b"], "seed": seed, "samples": table.samples, "distinct": table.distinct,
        "seconds": table.seconds, "samples_per_second": table.samples_per_second,
        "table": str(out / plots.TABLE), "table_rows": rows_written, "min_count": min_count,
        "sampling": table.config, "top": min(top, table.distinct),
    }
    k = min(top, table.distinct)
    rows = []
    if k:
        rows = top_mod.measure(table.hex(k), table.counts[:k], table.log10_prior(k), out / TOP_ROWS, bits=bits,
                               seed=seed, widths=widths, overtrain=overtrain, likelihood=likelihood,
                               progress=top_progress)
        top_mod.write_csv(out / plots.TOP, rows)
        summary.update(top_table=str(out / plots.TOP), top_settings=rows[0]["settings"],
                       correlations=top_mod.correlations(rows),
                       zero_error=sum(r["zero_error_epoch"] is not None for r in rows))
    summary["versions"] = runs.versions()
    runs.write_json(out / plots.SUMMARY, summary)
    if figures:
        summary["figures"] = [str(p) for p in plots.plot_boolean(out)]
    return summary

