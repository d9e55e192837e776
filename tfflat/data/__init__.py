"""Tasks (MNIST ≥ 5, CIFAR cats/cars, Boolean) and the S / A / E splits of SPEC §1."""

from tfflat.data.splits import Splits, draw_indices, make_splits, take
from tfflat.data.keys import function_key
from tfflat.data.tasks import TASKS, Task, boolean_inputs, input_shape, load_task, parse_target

__all__ = ["Splits", "Task", "TASKS", "boolean_inputs", "draw_indices", "function_key", "input_shape", "load_task",
           "make_splits", "parse_target", "take"]
