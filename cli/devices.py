"""``--devices`` and ``--precision``: the options every heavy command shares (:mod:`tfflat.devices`)."""

from __future__ import annotations

import click

from tfflat.devices import SPEC_HELP

devices_option = click.option(
    "--devices", default="auto", show_default=True, metavar="SPEC",
    help=f"Where to run: {SPEC_HELP}. Several devices: one tf.distribute replica each (same numbers up to "
         "float rounding).")

precision_option = click.option(
    "--precision", type=click.Choice(["float32", "mixed_bfloat16", "mixed_float16"]), default="float32",
    show_default=True, help="Training precision (e.g. ResNet50 on GPUs); weights, evaluation and every measure "
                            "stay float32.")


def scope(spec):
    """The context the command's library call runs in: ``spec``'s devices (see :func:`tfflat.devices.scope`)."""
    from tfflat import devices

    return devices.scope(spec)
