"""Shared fixtures: the real data in ../shared/data (override with TFFLAT_DATA_DIR) and small splits."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TFFLAT_OFFLINE", "1")   # tests never reach a data hub

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("TFFLAT_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> str:
    if not (DATA_DIR / "mnist").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set TFFLAT_DATA_DIR)")
    return str(DATA_DIR)


@pytest.fixture(scope="session")
def mnist(data_dir):
    from tfflat.data import load_task

    return load_task("mnist", data_dir)


@pytest.fixture(scope="session")
def mnist_small(mnist):
    """|S| = 100, |A| = 20, |E| = 200 of real MNIST."""
    from tfflat.data import make_splits

    return make_splits(mnist, 100, 20, 200, seed=0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def run_cli(capsys):
    """``run_cli([ARGS…])`` runs ``tfflat ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from tfflat_cli.main import main

    def run(args):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
