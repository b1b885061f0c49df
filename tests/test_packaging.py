"""The package layout: top-level code folders import as medbuilder.<folder>."""

import tomllib
from pathlib import Path

import medbuilder

REPO = Path(__file__).resolve().parent.parent
CODE_FOLDERS = ("protocol", "agents", "tasks", "flows", "dashboards")


def _declared_packages() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"])


def test_every_code_folder_is_a_declared_package():
    found = set()
    for top in ("medbuilder", *CODE_FOLDERS):
        for init in (REPO / top).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / top).parts
            found.add(".".join(("medbuilder",) + (() if top == "medbuilder" else (top,)) + rel))
    missing = found - _declared_packages()
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_code_folders_import_under_medbuilder():
    import importlib

    for folder in CODE_FOLDERS:
        module = importlib.import_module(f"medbuilder.{folder}")
        assert Path(module.__file__).parent == REPO / folder
    assert medbuilder.REPO_ROOT == REPO
