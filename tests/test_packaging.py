"""Packaging: the sdist carries everything an install and the tests need, and the tests pass from it;
every third-party module the code imports is a declared dependency; the license is declared as
PEP 639 has it; CI's minimum-versions run (``.ci/minimums.txt``) pins exactly the declared floors.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; these checks need not run on every Python

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
#: what the sdist may leave out of the checkout
NOT_SHIPPED = {".gitignore"}
#: a few quick tests that need the shipped non-Python files (unit, example config, docs, fixtures)
SDIST_TESTS = [
    "tests/test_architecture.py",
    "tests/test_normalize.py",
    "tests/test_config_example.py",
    "tests/test_systemd_unit.py",
    "tests/test_contrib.py",
]


def requirement_name(req: str) -> str:
    return normalize(re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0])


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def floors(reqs: list[str]) -> dict[str, str]:
    found = {}
    for req in reqs:
        m = re.search(r">=\s*([\w.]+)", req)
        if m:
            found[requirement_name(req)] = m.group(1)
    return found


@pytest.mark.slow
def test_the_sdist_holds_every_tracked_file_and_its_tests_pass_from_it(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="python -m build (the dev extra) builds the sdist")
    out = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (archive,) = out.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    tree = tmp_path / archive.name.removesuffix(".tar.gz")
    shipped = {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()}

    if (ROOT / ".git").exists() and shutil.which("git"):
        tracked = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        missing = sorted(set(tracked) - shipped - NOT_SHIPPED)
        assert not missing, f"tracked but not in the sdist: {missing}"
    assert "LICENSE" in shipped
    assert "License-Expression: Apache-2.0" in (tree / "PKG-INFO").read_text()

    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run(
        [sys.executable, "-c", "import connector; print(connector.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(tree), where  # the unpacked code is what the tests run
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SDIST_TESTS],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def third_party_imports() -> dict[str, list[str]]:
    """Top-level modules imported anywhere in ``connector/`` that are neither ours nor the standard
    library, with the files importing them (imports under ``if TYPE_CHECKING:`` included: mypy
    needs them too)."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "connector").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "connector" and top not in sys.stdlib_module_names:
                    found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_imported_module_is_a_declared_dependency() -> None:
    """A module reaching us only through another package (requests through pysnow) breaks the day
    that package drops it; an optional extra counts for the module it serves."""
    declared = {requirement_name(r) for r in PROJECT["dependencies"]}
    optional = {requirement_name(r) for reqs in PROJECT["optional-dependencies"].values() for r in reqs}
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for module, files in sorted(third_party_imports().items()):
        dists = {normalize(d) for d in distributions.get(module, [])}
        if not dists:
            problems.append(f"{module} (imported by {files[0]}) is not installed from any distribution")
        elif not dists & (declared | optional):
            problems.append(f"{module} (imported by {files[0]}) comes from {sorted(dists)}: not declared")
    assert not problems, "\n".join(problems)


def test_the_import_scan_sees_the_direct_imports() -> None:
    """Guards the test above: the modules it must find."""
    assert {"requests", "urllib3", "pysnow", "slack_sdk", "yaml", "prometheus_client"} <= set(
        third_party_imports()
    )


def test_the_license_is_declared_as_pep_639_has_it() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if requirement_name(r) == "setuptools"]
    floor = floors([setuptools])["setuptools"]
    assert tuple(int(p) for p in floor.split(".")[:1]) >= (77,)  # the first to read license-files


def test_ci_minimums_pin_exactly_the_declared_floors() -> None:
    """``.ci/run`` installs ``.[dev]`` constrained by ``.ci/minimums.txt`` and runs tests with it: the
    file must pin every floor of the dependencies and the dev extra, no more, no other version."""
    wanted = floors(PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"])
    pinned = {}
    for line in (ROOT / ".ci" / "minimums.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pinned[normalize(name)] = version.strip()
    assert pinned == wanted
