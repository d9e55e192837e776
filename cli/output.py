"""Shared CLI plumbing: progress display on stderr, summaries and ``--json`` output on stdout."""

from __future__ import annotations

import sys
import time

import click


class Progress:
    """A one-line progress display on stderr (redrawn in place on a terminal, quiet otherwise).

    ``total=None`` shows an open-ended counter (e.g. epochs until zero error).
    """

    def __init__(self, label: str, total: int | None = None, unit: str = "it", enabled: bool | None = None):
        self.label, self.total, self.unit = label, total, unit
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.first = None          # done at the first update: work resumed from disk is not in the rate

    def update(self, done: int, info: str = "") -> None:
        if not self.enabled:
            return
        if self.first is None:
            self.first = done
        now = time.perf_counter()
        if now - self.last < 0.1 and (self.total is None or done < self.total):
            return
        self.last = now
        elapsed = now - self.t0
        rate = (done - self.first) / elapsed if elapsed > 0 else 0.0
        if self.total:
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            bar = "#" * int(20 * done / self.total)
            head = f"{self.label} [{bar:<20}] {done}/{self.total} {rate:,.1f} {self.unit}/s eta {eta:,.0f}s"
        else:
            head = f"{self.label} {done} {self.unit} {elapsed:,.1f}s"
        click.echo(f"\r{head} {info}"[:200].ljust(100), err=True, nl=False)

    def close(self) -> None:
        if self.enabled:
            click.echo("", err=True)


def emit(summary: dict, as_json: bool, lines: list[str]) -> None:
    """Print ``summary`` as one strict JSON object (``--json``: a non-finite number is ``null`` with a
    ``<key>_nonfinite`` sibling naming it, :func:`tfflat.runs.encode`) or the human-readable ``lines``."""
    if as_json:
        from tfflat import runs

        click.echo(runs.dumps(summary))
    else:
        for line in lines:
            click.echo(line)
