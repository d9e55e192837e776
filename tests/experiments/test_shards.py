"""Merging a sweep's shards (issue 17): two `--shard I/2` runs merge into the grid exactly once; a partial
merge resumes; duplicates, conflicts, other experiments and non-results files; `tfflat merge`; the SLURM and
Kubernetes examples run the command the docs give."""

import json
import re
from pathlib import Path

import pytest

from tfflat import runs
from tfflat.errors import UserError
from tfflat.experiments import config, results, shards, sweep

ROOT = Path(__file__).resolve().parents[2]
TINY = """\
experiment = "sweep"
[data]
dataset = "mnist"
train_size = 30
test_size = 30
attack_sizes = [0]
[train]
seeds = [0, 1]
[sharpness]
enabled = false
[prior]
enabled = false
"""


@pytest.fixture(scope="module")
def shard_files(tmp_path_factory, mnist, data_dir):
    tmp = tmp_path_factory.mktemp("shards")
    (tmp / "tiny.toml").write_text(TINY)
    exp = config.load(tmp / "tiny.toml", data_dir=data_dir)
    files = []
    for i in (1, 2):
        out = tmp / f"tiny.{i}-of-2.jsonl"
        assert sweep.run(exp, out, (i, 2), task=mnist)["run"] == 1
        files.append(out)
    return exp, files


def test_two_shards_merge_into_the_grid_once(shard_files, tmp_path, run_cli):
    exp, files = shard_files
    merged = tmp_path / "all.jsonl"
    s = shards.merge([files[0]], merged)                   # the first shard alone: half the grid missing
    assert (s["added"], s["complete"], s["missing"]) == (1, False, ["sgd/A0/seed1/over0"])
    s = shards.merge(files, merged)                        # resumes: shard 1 is in already
    assert (s["records"], s["added"], s["duplicates"], s["missing"], s["complete"]) == (2, 1, 1, [], True)
    recs = {r["key"]: r for r in runs.read_jsonl(merged)}
    want = {k for p in sweep.grid(exp) for k in sweep.point_keys(exp, p)}
    assert set(recs) == want and len(runs.read_jsonl(merged)) == 2
    for f in files:
        for r in runs.read_jsonl(f):
            assert recs[r["key"]] == r
    meta = runs.read_json(results.meta_path(merged))
    assert [m["file"] for m in meta["merged_from"]] == [str(f) for f in files]
    assert meta["config"] == runs.read_json(results.meta_path(files[0]))["config"]
    # the merged file is a results file like any other: a sweep resumes from it with nothing to do
    assert sweep.run(exp, merged, task=None)["run"] == 0
    code, out, err = run_cli(["merge", *files, "--out", tmp_path / "cli.jsonl", "--json"])
    assert code == 0 and json.loads(out)["complete"], err
    code, out, err = run_cli(["merge", files[1], "--out", tmp_path / "half.jsonl"])
    assert code == 1 and "missing" in err and "1 records" in out


def test_conflicts_other_experiments_and_bad_inputs(shard_files, tmp_path):
    exp, files = shard_files
    recs = runs.read_jsonl(files[1])
    changed = tmp_path / "changed.jsonl"
    for r in recs:
        runs.append_jsonl(changed, {**r, "test_accuracy": -1.0})
    runs.write_json(results.meta_path(changed), runs.read_json(results.meta_path(files[1])))
    s = shards.merge([files[1], changed], tmp_path / "m.jsonl")
    assert s["conflicts"] == sorted(r["key"] for r in recs) and s["added"] == 1
    assert all(r["test_accuracy"] >= 0 for r in runs.read_jsonl(tmp_path / "m.jsonl"))     # first copy kept

    other = tmp_path / "other.jsonl"
    meta = runs.read_json(results.meta_path(files[1]))
    meta["config"]["data"]["train_size"] = 31
    runs.write_json(results.meta_path(other), meta)
    runs.append_jsonl(other, recs[0])
    with pytest.raises(UserError, match="different config"):
        shards.merge([files[0], other], tmp_path / "x.jsonl")
    with pytest.raises(UserError, match="different config"):          # nor into a file of another experiment
        shards.merge([files[0]], other)
    bare = tmp_path / "bare.jsonl"
    bare.write_text(json.dumps(recs[0]) + "\n")
    with pytest.raises(UserError, match="no sidecar"):
        shards.merge([bare], tmp_path / "y.jsonl")
    with pytest.raises(UserError, match="also an input"):
        shards.merge(files, files[0])
    with pytest.raises(UserError, match="does not exist"):
        shards.merge([tmp_path / "nope.jsonl"], tmp_path / "z.jsonl")


def test_cluster_examples_run_the_documented_commands():
    slurm = (ROOT / "examples" / "slurm" / "sweep.sbatch").read_text()
    assert re.search(r"^#SBATCH --array=1-\d+", slurm, re.M) and "--gres=gpu:" in slurm
    assert "N=$SLURM_ARRAY_TASK_COUNT" in slurm and "--shard \"$SHARD\"" in slurm
    assert "--out \"$RESULTS/$NAME.$I-of-$N.jsonl\"" in slurm
    merge = (ROOT / "examples" / "slurm" / "merge.sbatch").read_text()
    assert "tfflat merge" in merge
    k8s = (ROOT / "examples" / "kubernetes" / "sweep-indexed-job.yaml").read_text()
    assert "completionMode: Indexed" in k8s and "JOB_COMPLETION_INDEX" in k8s and "nvidia.com/gpu" in k8s
    assert re.search(r"completions: (\d+)\n\s+parallelism: \d+", k8s)
    count = int(re.search(r"completions: (\d+)", k8s).group(1))
    assert f"/{count}" in k8s, "the shard count in the command must equal completions"
