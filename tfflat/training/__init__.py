"""Training to the zero-error epoch, and the paper's optimizers by name."""

from tfflat.training.loop import Trainer, TrainResult, evaluate, predict_logits, sigmoid_ce, train

__all__ = ["Trainer", "TrainResult", "evaluate", "predict_logits", "sigmoid_ce", "train"]
