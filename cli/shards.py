"""``tfflat merge``: the results files of a sweep's shards (``--shard I/N`` jobs) into one."""

from __future__ import annotations

import click

from .output import emit


@click.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The merged results file (.jsonl, with a sidecar); extended when it exists (same experiment).")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def merge(shards, out, as_json):
    """Merge the results files of one sweep's shards (each job's --out) into one file.

    \b
    tfflat merge results/fig3c.*-of-8.jsonl --out results/fig3c.jsonl
    tfflat plot results/fig3c.jsonl

    Every shard must hold the same experiment on the same data. Exit status 1 while points of the
    grid are still missing (the merged file is written; merge again when their shards finish).
    """
    from tfflat.errors import IncompleteError
    from tfflat.experiments import shards as sh

    s = sh.merge(shards, out)
    lines = [f"merged {len(s['inputs'])} file(s) into {s['out']}: {s['records']} records ({s['added']} added, "
             f"{s['duplicates']} duplicate copies left out)"]
    if s["conflicts"]:
        lines.append(f"warning: {len(s['conflicts'])} key(s) differ between shards (first copy kept): "
                     + ", ".join(s["conflicts"][:5]) + (" …" if len(s["conflicts"]) > 5 else ""))
    emit(s, as_json, lines)
    if s["missing"]:
        raise IncompleteError(f"{len(s['missing'])} record(s) of the grid are missing, e.g. {s['missing'][0]}; "
                              "rerun (resume) the shards that hold them and merge again")
