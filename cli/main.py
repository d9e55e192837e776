"""The ``tfflat`` command: a click group whose subcommands live in this package, imported lazily.

Errors: :class:`tfflat.errors.UserError` and click's usage errors print one line and exit 2;
:class:`tfflat.errors.IncompleteError` prints one line and exits 1.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings

import click

import tfflat
from tfflat.errors import IncompleteError, UserError

# command name -> "module:function" inside this package (imported only when the command runs)
COMMANDS = {
    "train": "train:train",
    "rescale": "rescale:rescale",
    "sharpness": "flatness:sharpness",
    "hessian": "flatness:hessian",
    "flatness": "measures:flatness",
    "prior": "prior:prior",
    "boolean": "boolean:boolean",
    "sweep": "experiments:sweep",
    "merge": "shards:merge",
    "temporal": "experiments:temporal",
    "plot": "plot:plot",
}


# Library errors name Python parameters in backticks (`zeta`); each maps to the command's option of the
# same name (`batch_size` -> --batch-size) unless listed here.
PARAM_FLAGS = {
    "train": {"opt_args": "--opt-arg", "checkpoint_seconds": "--checkpoint-minutes"},
    "prior": {"seed": "--kernel-seed", "cache_dir": "--kernel-cache", "init": "--kernel-init"},
    "rescale": {"units": "--neuron-wise"},
    "boolean": {"state_dir": "--out", "rtol": "--sharpness-rtol", "window": "--sharpness-window",
                "max_epochs": "--sharpness-max-epochs"},
}


def flag_text(message: str, argv=None, command: str | None = None) -> str:
    """``message`` with each backticked Python parameter replaced by the invoked command's flag for it
    (the command named, or the first command name in ``argv``)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    name = command or next((a for a in argv if a in COMMANDS), None)
    flags = {}
    if name is not None:
        try:
            command = cli.get_command(None, name)
        except Exception:  # noqa: BLE001 - a broken subcommand import must not hide the original error
            command = None
        for param in getattr(command, "params", []):
            if isinstance(param, click.Option) and param.name:
                longest = max(param.opts, key=len)
                flags.setdefault(param.name, longest)
        flags.update(PARAM_FLAGS.get(name, {}))
    return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`", lambda m: flags.get(m.group(1), m.group(1)), str(message))


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name in sorted(COMMANDS) if self.get_command(ctx, name) is not None]

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        try:
            return getattr(importlib.import_module(f"{__package__}.{module}"), attr)
        except (ModuleNotFoundError, AttributeError) as err:
            if f"{__package__}.{module}" in str(err) or attr in str(err):
                return None       # command not part of this build
            raise


def quiet_tensorflow_import() -> None:
    """Import TensorFlow with its C++ start-up chatter (CUDA probing) kept off the user's stderr."""
    if "tensorflow" in sys.modules:
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(tfflat.__version__, prog_name="tfflat")
def cli():
    """Flatness (sharpness, Hessian spectra) versus the Bayesian prior log P(f) of trained networks.

    \b
    Typical use:
      tfflat train --dataset mnist --data-dir DATA --attack-size 100 --out runs/a100
      tfflat sharpness runs/a100
      tfflat prior runs/a100
    """
    ctx = click.get_current_context()
    args = (ctx.obj or {}).get("argv", sys.argv[1:])
    numpy_only = ctx.invoked_subcommand == "prior" and any(a.split("=")[0] == "--kernel-file" for a in args)
    if ctx.invoked_subcommand and not numpy_only and not any(a in ("-h", "--help") for a in args):
        quiet_tensorflow_import()      # (EP on a kernel file needs only NumPy/SciPy: no TensorFlow start-up)


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {flag_text(str(message))}\n"


def main(argv=None) -> None:
    """Console entry point: run the group, turning expected failures into one line + exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.formatwarning = _one_line     # a library warning during a long job: one line, not a stack frame
    try:
        cli.main(args=argv, prog_name="tfflat", standalone_mode=False,
                 obj={"argv": sys.argv[1:] if argv is None else [str(a) for a in argv]})
    except UserError as err:
        click.echo(f"error: {flag_text(err, argv)}", err=True)
        sys.exit(2)
    except IncompleteError as err:
        click.echo(f"incomplete: {err}", err=True)
        sys.exit(1)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else str(err))
        sys.exit(2)
    except click.ClickException as err:
        hint = f" (see `{err.ctx.command_path} --help`)" if getattr(err, "ctx", None) else ""
        click.echo(f"error: {err.format_message()}{hint}", err=True)
        sys.exit(err.exit_code if err.exit_code != 1 else 2)
    except click.exceptions.Abort:
        click.echo("aborted; finished results are kept and a rerun resumes", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted; finished results are kept and a rerun resumes", err=True)
        sys.exit(130)
    except MemoryError:
        click.echo("error: out of memory; use smaller sizes (finished results are kept)", err=True)
        sys.exit(2)
    except OSError as err:           # e.g. disk full inside a library that tfflat calls
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        click.echo(f"error: {err.strerror or err}{where}; free disk space or choose another --out, and rerun "
                   "(finished results are kept)", err=True)
        sys.exit(2)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
