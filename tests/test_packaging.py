"""The package metadata stays complete: every tfflat subpackage is listed in setup.cfg, and every
third-party module that tfflat or its CLI imports comes from a distribution setup.cfg requires."""

import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def test_setup_cfg_lists_every_package():
    cfg = setup_cfg()
    listed = set(cfg["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "tfflat").rglob("__init__.py")}
    assert found | {"tfflat_cli"} == listed
    assert "tfflat_cli = cli" in cfg["options"]["package_dir"]


def imported_modules(*folders) -> dict[str, str]:
    """Top-level names of the absolute imports in the .py files under ``folders`` → one file using each."""
    out = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    out.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return out


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_a_declared_dependency():
    declared = {normalize(re.match(r"[A-Za-z0-9_.-]+", line.strip()).group())
                for line in setup_cfg()["options"]["install_requires"].strip().splitlines() if line.strip()}
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module, used_in in imported_modules("tfflat", "cli").items():
        if module in sys.stdlib_module_names or module in ("tfflat", "tfflat_cli"):
            continue
        dists = {normalize(d) for d in providers.get(module, [module])}
        if not dists & declared:
            missing[module] = used_in
    assert not missing, f"imported but not in setup.cfg install_requires: {missing}"
