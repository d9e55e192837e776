"""Run a snippet in a fresh Python with two logical CPU devices (``tf.config.set_logical_device_configuration``),
so that the distributed code paths run on a machine without GPUs while the rest of the suite keeps one device."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import json, os, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
def emit(**values):
    print("@@result " + json.dumps(values))
"""


def run_two_devices(code: str, timeout: int = 600) -> dict:
    """Run ``code`` after :data:`PRELUDE`; return the dict it passed to ``emit(...)`` (merged)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("@@result "):
            out.update(json.loads(line[len("@@result "):]))
    return out
