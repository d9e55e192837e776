"""tfflat.devices: the device spec grammar, GPU detection without TensorFlow, strategies, worker pinning."""

import subprocess
import sys

import pytest

from tfflat import devices
from tfflat.devices import Devices
from tfflat.errors import UserError


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this process sees ``n`` GPUs (through CUDA_VISIBLE_DEVICES ``cvd`` when given)."""
    def fake(n, cvd=None):
        monkeypatch.setattr(devices, "nvidia_present", lambda: n > 0)
        monkeypatch.setattr(devices, "gpu_count", lambda: n)
        if cvd is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cvd)
    return fake


def test_spec_grammar(gpus):
    gpus(4)
    assert devices.parse("auto") == Devices("gpu", (0, 1, 2, 3))
    assert devices.parse(None) == devices.parse("auto")
    assert devices.parse("gpu") == Devices("gpu", (0, 1, 2, 3))
    assert devices.parse("gpu:1, 3") == Devices("gpu", (1, 3))
    assert devices.parse(2) == devices.parse("2") == Devices("gpu", (0, 1))
    assert devices.parse("CPU") == Devices("cpu", (0,))
    assert devices.parse("gpu:1,3").names == ["/gpu:1", "/gpu:3"]
    for bad, why in (("gpu:4", "no gpu 4"), ("gpu:1,1", "twice"), ("5", "5 GPU"), ("0", "≥ 1"), ("tpu", "unknown")):
        with pytest.raises(UserError, match=why):
            devices.parse(bad)
    gpus(0)
    assert devices.parse("auto") == Devices("cpu", (0,))
    with pytest.raises(UserError, match="none is visible"):
        devices.parse("gpu")


def test_worker_env_pins_one_worker_per_gpu(gpus):
    gpus(4)
    envs = [devices.worker_env(i, 4) for i in range(4)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "2", "3"]
    assert all(e["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" for e in envs)
    # ids as the parent sees them: physical ids (or UUIDs) from CUDA_VISIBLE_DEVICES; round robin beyond
    gpus(2, "5,GPU-8f2a")
    assert [devices.worker_env(i, 3)["CUDA_VISIBLE_DEVICES"] for i in range(3)] == ["5", "GPU-8f2a", "5"]
    gpus(3)
    assert [devices.worker_env(i, 2, "gpu:1,2")["CUDA_VISIBLE_DEVICES"] for i in range(2)] == ["1", "2"]
    assert devices.worker_env(0, 2, "cpu") == {"CUDA_VISIBLE_DEVICES": "-1"}
    gpus(0)
    assert devices.worker_env(0, 2) == {}


def test_no_tensorflow_import_where_there_is_no_nvidia_device():
    if devices.nvidia_present():
        pytest.skip("this machine has an NVIDIA device")
    code = ("import sys, tfflat.devices as d; r = (d.parse('auto'), d.worker_env(0, 2), d.gpu_count()); "
            "print(r, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(Devices(kind='cpu', ids=(0,)), {}, 0) False"


def test_cuda_visible_devices_hides_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert not devices.nvidia_present() and devices.gpu_count() == 0


def test_strategies_on_this_machine():
    import tensorflow as tf

    s = devices.strategy("auto" if not devices.nvidia_present() else "cpu")
    assert devices.is_default(s) and devices.replicas(s) == 1
    assert devices.describe(s)["replicas"] == 1
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert devices.strategy(mirrored) is mirrored and not devices.is_default(mirrored)
    assert devices.is_default(None) and devices.replicas(None) == 1
