"""Keras-native hook: :class:`FlatnessCallback` measures flatness (and the prior) during ``model.fit``.

    history = model.fit(x, y, epochs=50,
                        callbacks=[tfflat.keras.FlatnessCallback(x, y, every=5, log_dir="logs/flat")])
    history.history["log10_sharpness"]        # NaN on the epochs in between

Every ``every`` epochs the callback calls :func:`tfflat.measure` on the model as it is (inference
mode, weights untouched) and adds the numbers to the epoch's ``logs`` — so ``History`` and any later
callback (``CSVLogger``, ``EarlyStopping``) see them — and, with ``log_dir``, writes them as
TensorBoard scalars ``flatness/<name>``. The compiled measures are traced once per architecture,
so repeated measurements pay tracing and compilation once.
"""

from __future__ import annotations

import math

import keras

from tfflat.errors import UserError

LOGGED = {
    "sharpness": ("sharpness", "log10_sharpness"),
    "hessian": ("spectral_norm", "log10_top_product", "hessian_trace"),
    "prior": ("log10_prior", "pac_bayes_bound"),
}


class FlatnessCallback(keras.callbacks.Callback):
    """Measure every ``every`` epochs of ``model.fit``: into ``logs``/``History`` and TensorBoard.

    Args:
      x, y: the data S the measures use (arrays, tensors, or a ``tf.data.Dataset`` of (x, y) as ``x``).
      every: measure after epochs every, 2·every, … (1-based).
      measures: any of ``"sharpness"``, ``"hessian"``, ``"prior"`` (default: sharpness only; it is the
        cheapest).
      log_dir: write TensorBoard scalars ``flatness/<name>`` here (step = epoch, 1-based).
      x_test, y_test: E, for the prior's f (and its test accuracy).
      head: the model's head (read from the model by default).
      settings: passed to :func:`tfflat.measure` (``zeta``, ``epochs``, ``top_k``, ``seed``, …).

    Attributes:
      records: the full :func:`tfflat.measure` record of each measured epoch, with ``"epoch"``.
    """

    def __init__(self, x, y=None, every: int = 1, measures=("sharpness",), log_dir=None, *, x_test=None,
                 y_test=None, head=None, **settings):
        super().__init__()
        if int(every) != every or every < 1:
            raise UserError(f"`every` must be a positive integer, got {every}")
        from tfflat.api import _measures
        from tfflat.data.arrays import as_arrays

        self.measures = _measures(measures)
        self.x, self.y = as_arrays(x, y, names=("x", "y"))
        if self.y is None:
            raise UserError("`y` is missing: give the labels, or a tf.data.Dataset of (x, y) pairs as `x`")
        self.x_test = None if x_test is None else as_arrays(x_test, y_test, names=("x_test", "y_test"))
        self.every, self.log_dir, self.head, self.settings = int(every), log_dir, head, settings
        self.records: list[dict] = []
        self._writer = None
        self.keys = [k for m in self.measures for k in LOGGED[m]]

    def on_epoch_end(self, epoch, logs=None):
        from tfflat.api import measure

        logs = logs if logs is not None else {}
        if (epoch + 1) % self.every:
            logs.update(dict.fromkeys(self.keys, math.nan))     # History's lists stay one entry per epoch
            return
        xt, yt = self.x_test if self.x_test is not None else (None, None)
        rec = measure(self.model, self.x, self.y, xt, yt, measures=self.measures, head=self.head, **self.settings)
        values = {k: _number(rec[k]) for k in self.keys}
        logs.update(values)
        self.records.append({"epoch": epoch + 1, **rec})
        if self.log_dir is not None:
            self._scalars(values, epoch + 1)

    def _scalars(self, values: dict, step: int) -> None:
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        with self._writer.as_default():
            for k, v in values.items():
                if math.isfinite(v):
                    scalar(f"flatness/{k}", v, step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar in the default summary writer: what ``tensorboard``'s ``tf.summary.scalar``
    writes (a float32 tensor with the ``scalars`` plugin's metadata), without needing TensorBoard."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
                                           data_class=summary_pb2.DATA_CLASS_SCALAR)
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=metadata)


def _number(v) -> float:
    return math.nan if v is None else float(v)
