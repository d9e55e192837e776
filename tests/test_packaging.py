"""The package metadata stays complete: every tfflat subpackage is listed in setup.cfg."""

import configparser
from pathlib import Path

import tfflat

ROOT = Path(__file__).resolve().parents[1]


def test_setup_cfg_lists_every_package():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "tfflat").rglob("__init__.py")}
    assert found | {"tfflat_cli"} == listed
    assert "tfflat_cli = cli" in cfg["options"]["package_dir"]


def test_version():
    assert tfflat.__version__.count(".") == 2
