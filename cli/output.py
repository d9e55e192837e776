"""Shared CLI plumbing: progress display on stderr, summaries and ``--json`` output on stdout."""

from __future__ import annotations

import sys

import click


class Progress:
    """A progress bar on stderr (tqdm; drawn on a terminal, quiet otherwise).

    ``total=None`` shows an open-ended counter (e.g. epochs until zero error). The first
    :meth:`update` sets where the bar starts: work resumed from disk is not in the rate or the ETA.
    """

    def __init__(self, label: str, total: int | None = None, unit: str = "it", enabled: bool | None = None):
        self.label, self.total, self.unit = label, total, unit
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None

    def update(self, done: int, info: str = "") -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=done, desc=self.label, unit=f" {self.unit}", file=sys.stderr,
                            mininterval=0.1, dynamic_ncols=True, leave=True)
        else:
            self.bar.update(done - self.bar.n)
        if info:
            self.bar.set_postfix_str(info, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def emit(summary: dict, as_json: bool, lines: list[str]) -> None:
    """Print ``summary`` as one strict JSON object (``--json``: a non-finite number is ``null`` with a
    ``<key>_nonfinite`` sibling naming it, :func:`tfflat.runs.encode`) or the human-readable ``lines``."""
    if as_json:
        from tfflat import runs

        click.echo(runs.dumps(summary))
    else:
        for line in lines:
            click.echo(line)
