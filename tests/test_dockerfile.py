"""The Dockerfile, checked without a Docker daemon (issue 17): the base image states its Python version and
that version satisfies setup.cfg's python_requires; the TensorFlow it installs (with CUDA) lies in
setup.cfg's range; it copies everything the package build needs (and .dockerignore keeps it); its entry
point is the console script setup.cfg installs."""

import configparser
import json
import re
from pathlib import Path

from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def dockerfile():
    return DockerfileParser(path=str(ROOT / "Dockerfile"))


def setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def requirement(name: str) -> Requirement:
    reqs = [Requirement(line) for line in setup_cfg()["options"]["install_requires"].splitlines() if line.strip()]
    return next(r for r in reqs if r.name == name)


def instructions(kind: str) -> list[str]:
    return [s["value"] for s in dockerfile().structure if s["instruction"] == kind]


def test_base_image_states_a_python_that_setup_cfg_allows():
    df = dockerfile()
    assert len(df.parent_images) == 1
    image, tag = df.baseimage.split(":")
    assert image == "python", "the base image is the official Python image"
    python = re.match(r"(\d+\.\d+)(\.\d+)?-", tag).group(1)
    requires = setup_cfg()["options"]["python_requires"]
    assert Version(python) in Requirement(f"python{requires}").specifier, (python, requires)
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?-slim-\w+", tag), f"pin the distribution too, e.g. 3.11-slim-bookworm: {tag}"


def test_tensorflow_version_is_in_setup_cfg_range_and_brings_cuda():
    version = dockerfile().args["TENSORFLOW_VERSION"]
    assert Version(version) in requirement("tensorflow").specifier, (version, str(requirement("tensorflow")))
    installs = [r for r in instructions("RUN") if "tensorflow" in r]
    assert installs == ['pip install "tensorflow[and-cuda]==${TENSORFLOW_VERSION}"']
    # memory growth in the image too: several sweep workers may share one GPU
    assert dockerfile().envs.get("TF_FORCE_GPU_ALLOW_GROWTH") == "true"


def test_copies_what_the_package_build_needs_and_dockerignore_keeps_it():
    cfg = setup_cfg()
    sources = {src.rstrip("/") for value in instructions("COPY") for src in value.split()[:-1]}
    tops = {p.split(".")[0] for p in cfg["options"]["packages"].split()} - {"tfflat_cli"}
    tops |= {line.split("=")[1].strip() for line in cfg["options"]["package_dir"].splitlines() if "=" in line}
    needed = tops | {"setup.cfg", "pyproject.toml"}
    needed |= {cfg["metadata"]["long_description"].split("file:")[1].strip()}
    assert needed <= sources, f"not copied: {needed - sources}"
    for src in sources:
        assert (ROOT / src).exists(), src
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert sources <= kept, f"copied but excluded by .dockerignore: {sources - kept}"
    assert any(r.startswith("pip install .") and "tfflat --version" in r for r in instructions("RUN"))


def test_entry_point_is_the_tfflat_console_script():
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["tfflat"]
    scripts = setup_cfg()["options.entry_points"]["console_scripts"]
    assert re.search(r"^\s*tfflat\s*=\s*tfflat_cli\.main:main\s*$", scripts, re.M)
    assert json.loads(instructions("CMD")[-1]) == ["--help"]
