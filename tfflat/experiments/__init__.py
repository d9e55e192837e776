"""The paper's experiments from config files (SPEC §6): attack-set sweeps (Figs. 3, 4, S9, S16–S24),
temporal runs (Figs. 5, S11, S13–S15), their results files and the correlation statistics.

- :mod:`~tfflat.experiments.config` — TOML configs, one typed dataclass per section, validated before any work;
- :mod:`~tfflat.experiments.session` — the task, kernel and compiled steps shared by all points;
- :mod:`~tfflat.experiments.sweep` / :mod:`~tfflat.experiments.temporal` — the two experiments;
- :mod:`~tfflat.experiments.results` — resumable JSON-lines results with a sidecar, loaded per experiment;
- :mod:`~tfflat.experiments.tensorboard` — TensorBoard scalars of the records (sweeps and temporal runs);
- :mod:`~tfflat.experiments.stats` — the correlation table (coefficients: :mod:`tfflat.stats`);
- :mod:`~tfflat.experiments.plots` — the figures (Figs. 3–5, S9–S24, eq. 4).
"""
