"""The package: pyproject.toml reads the requirement files, constraints.txt pins every one of them, the
console command runs, and the linters that the configuration names find nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS = {"cloud": "requirements-cloud.txt", "train": "requirements-train.txt", "dev": "requirements-dev.txt"}


def requirements(name: str) -> list[Requirement]:
    """Every line of a requirement file as setuptools reads it: whole-line comments only, no pip options."""
    lines = [line.strip() for line in (REPO / name).read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def constraints() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"constraints.txt pins exactly: {line}"
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def test_the_package_takes_its_dependencies_and_extras_from_the_requirement_files():
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]
    assert set(PYPROJECT["project"]["dynamic"]) == {"version", "dependencies", "optional-dependencies"}
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
    assert {k: v["file"] for k, v in dynamic["optional-dependencies"].items()} == {k: [v] for k, v in EXTRAS.items()}
    for name in ["requirements.txt", *EXTRAS.values()]:
        assert requirements(name), f"{name} parses as PEP 508 lines (no inline comments, no pip options)"


def test_every_requirement_is_pinned_in_constraints_within_its_bounds():
    pins = constraints()
    for name in ["requirements.txt", "requirements-nodeps.txt", *EXTRAS.values()]:
        for req in requirements(name):
            pinned = pins.get(canonicalize_name(req.name))
            assert pinned is not None, f"{req.name} ({name}) has no exact version in constraints.txt"
            assert req.specifier.contains(pinned, prereleases=True), f"{req} ({name}) against {pinned}"


def test_runtime_needs_no_test_or_training_package():
    runtime = {canonicalize_name(r.name) for r in requirements("requirements.txt")}
    assert not runtime & {"jsonschema", "pytest", "scikit-learn", "safetensors", "requests"}
    assert "scikit-learn" in {canonicalize_name(r.name) for r in requirements("requirements-train.txt")}


def test_the_console_command_is_the_cli():
    script = PYPROJECT["project"]["scripts"]["speechmood"]
    module, _, function = script.partition(":")
    assert (module, function) == ("workers.entrypoints.cli.main", "console")
    from workers.entrypoints.cli.main import build_parser

    assert "speechmood run" in build_parser("speechmood").format_help()
    installed = Path(sys.executable).parent / "speechmood"
    if not installed.exists():
        if on_ci():
            pytest.fail(f"{installed} is missing: make setup installs the package (pip install -e .)")
        pytest.skip("the package is not installed in this environment (make setup installs it)")
    out = subprocess.run([str(installed), "--version"], capture_output=True, text=True, timeout=120, check=True)
    from workers import PIPELINE_VERSION

    assert out.stdout.strip() == f"speechmood {PIPELINE_VERSION}"


def _tool(module: str) -> list[str]:
    if shutil.which(module, path=str(Path(sys.executable).parent)) is None:
        try:
            __import__(module)
        except ImportError:
            if on_ci():
                pytest.fail(f"{module} is not installed (requirements-dev.txt)")
            pytest.skip(f"{module} is not installed (pip install -r requirements-dev.txt)")
    return [sys.executable, "-m", module]


def test_ruff_finds_nothing():
    out = subprocess.run([*_tool("ruff"), "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_the_core_type_checks():
    out = subprocess.run([*_tool("mypy"), "--no-incremental", "--cache-dir", os.devnull], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_a_wheel_carries_the_code_the_emotion_head_and_the_report_assets_and_nothing_else(tmp_path):
    import zipfile

    source = tmp_path / "source"  # a copy: setuptools leaves build/ and *.egg-info where it builds
    shutil.copytree(REPO / "workers", source / "workers", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ["pyproject.toml", "README.md", "requirements.txt", *EXTRAS.values()]:
        shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("speechmood-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("speechmood-")}
    assert tops == {"workers"}, "tests, bench, devstack and trigger stay out of the package"
    heads = sorted(p.parent.name for p in (REPO / "workers" / "engines" / "heads").glob("*/head.npz"))
    for head in heads:
        assert {f"workers/engines/heads/{head}/{f}" for f in ("head.npz", "MODEL_CARD.md")} <= set(names)
    assert {"workers/report/report.css", "workers/report/report.js"} <= set(names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "speechmood = workers.entrypoints.cli.main:console" in entry_points
