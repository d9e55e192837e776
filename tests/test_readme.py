"""The README's "Your own model" example runs as written (its own small generated data)."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_your_own_model_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    section = text[text.index("## Your own model"):text.index("## Usage")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)        # noqa: S102 - our own README
    record, history = scope["record"], scope["history"].history
    assert record["head"] == "sigmoid" and record["sharpness_converged"]
    assert record["sharpness"] > 0 and record["spectral_norm"] > 0 and record["log10_prior"] < 0
    assert 0.5 < record["test_accuracy"] <= 1 and record["pac_bayes_bound"] > 0
    assert np.isnan(history["sharpness"][0]) and history["sharpness"][9] > 0 and len(history["sharpness"]) == 20
    assert list((tmp_path / "logs" / "flatness").glob("events.out.tfevents.*"))
    printed = capsys.readouterr().out.split()
    assert float(printed[2]) == record["log10_prior"]
