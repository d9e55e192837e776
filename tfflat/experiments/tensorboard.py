"""TensorBoard scalars of experiment records (sweeps and temporal runs share this one writer).

One TensorBoard *run* (a sub-folder of the log directory) per trajectory or sweep curve, one *tag*
per measured quantity, one point per record at ``step``: a temporal run writes step = epoch into
``<optimizer>_A<|A|>_seed<seed>``; a sweep writes step = |A| into ``<optimizer>_seed<seed>[_over<N>]``,
so TensorBoard draws each quantity against the attack-set size. Written with TensorFlow core only
(the ``scalars`` plugin's metadata is set by hand), so the tensorboard package is needed only to read.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

# the record fields written as scalars (when present and finite); sharpness fields get a /zeta=… suffix
SCALARS = ("train_accuracy", "test_accuracy", "generalization_error", "train_loss", "zero_error_epoch",
           "log10_prior", "pac_bayes_bound", "gp_test_error", "spectral_norm", "log10_topk_product")
SHARPNESS_SCALARS = ("log10_sharpness", "corner_sharpness", "sharpness_converged")


def run_name(text: str) -> str:
    """A safe folder name for a TensorBoard run."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)


def tags(rec: dict, common: bool = True) -> dict[str, float]:
    """{tag: value} of a record: :data:`SCALARS` and the zoo's ``flatness_<name>`` (when ``common``) and the
    sharpness fields, tagged
    ``log10_sharpness/zeta=0.0001`` etc. when the record has a ζ. Missing and non-finite values are left out."""
    out = {}
    suffix = "" if rec.get("zeta") is None else f"/zeta={float(rec['zeta']):g}"
    from tfflat.flatness.measures import MEASURES

    zoo = tuple(f"flatness_{m}" for m in MEASURES) if common else ()      # [flatness] measures' values
    for name in (SCALARS if common else ()) + zoo + SHARPNESS_SCALARS:
        v = rec.get(name)
        if v is None or isinstance(v, str):
            continue
        v = float(v)
        if math.isfinite(v):
            out[name + (suffix if name in SHARPNESS_SCALARS else "")] = v
    return out


class ScalarWriter:
    """Lazily opened ``tf.summary`` file writers under ``directory``, one per run name."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self._writers = {}

    def write(self, run: str, step: int, values: dict[str, float]) -> None:
        """Write ``values`` ({tag: number}) at ``step`` into run ``run`` and flush."""
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        if not values:
            return
        name = run_name(run)
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.directory / name))
        writer = self._writers[name]
        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR).SerializeToString()
        with writer.as_default():
            for tag, v in values.items():
                tf.summary.write(tag, tf.constant(float(v), tf.float32), step=int(step), metadata=meta)
        writer.flush()

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_scalars(directory) -> list[tuple[str, str, int, float]]:
    """(run, tag, step, value) of every scalar in the event files under ``directory`` (TensorFlow
    core only), in file order: a way to check or load what was written without TensorBoard."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    directory = Path(directory)
    out = []
    for f in sorted(directory.rglob("events.out.tfevents.*")):
        run = str(f.parent.relative_to(directory))
        for raw in tf.data.TFRecordDataset(str(f)):
            ev = event_pb2.Event.FromString(raw.numpy())
            for v in ev.summary.value:
                out.append((run, v.tag, int(ev.step), float(tf.make_ndarray(v.tensor))))
    return out
