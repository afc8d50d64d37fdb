"""The suite itself: nothing a test compares against is computed when pytest imports a module.

A value computed at import (a token "valid from now + 600 s", the device CTranslate2 sees,
an environment variable) is fixed at collection and read minutes later, on whatever machine
and in whatever environment the suite runs: a slow machine made a not-yet-valid token valid.
Module level, decorators and default arguments run at import; function bodies and lambdas do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from workers.core.settings import REPO_ROOT

# Calls whose value depends on the clock, the machine, the environment or chance.
DEPENDENT_CALLS = {
    "time.time", "time.monotonic", "time.perf_counter", "datetime.now", "datetime.utcnow", "date.today",
    "datetime.datetime.now", "datetime.date.today", "os.environ.get", "os.getenv", "os.cpu_count", "os.urandom",
    "random.random", "random.randbytes", "uuid.uuid4", "socket.gethostname", "platform.machine",
    "platform.processor", "ctranslate2_device", "torch_device", "SigningKey.generate", "now_rfc3339",
}


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return node.id if isinstance(node, ast.Name) else None


def _import_time_calls(node: ast.AST) -> list[tuple[int, str]]:
    """(line, callee) of every call in ``node`` that runs when its module is imported."""
    found = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Lambda):
            continue
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            runs_now = [*child.decorator_list, *child.args.defaults, *(d for d in child.args.kw_defaults if d)]
            for expr in runs_now:
                found += _import_time_calls(ast.Expression(expr))
            continue
        if isinstance(child, ast.Call) and (name := _dotted(child.func)):
            found.append((child.lineno, name))
        found += _import_time_calls(child)
    return found


def dependent_import_time_calls(source: str) -> list[tuple[int, str]]:
    return [(line, name) for line, name in _import_time_calls(ast.parse(source)) if name in DEPENDENT_CALLS]


def test_the_guard_sees_calls_in_decorators_and_at_module_level_but_not_in_bodies() -> None:
    source = (
        "import time, os\n"
        "STAMP = time.time()\n"
        "@pytest.mark.parametrize('t', [KEY.token(nbf=int(time.time()) + 600)])\n"
        "def test_a(t, home=os.environ.get('HOME')):\n"
        "    now = time.time()\n"
        "CASES = [lambda: time.time()]\n"
    )
    assert dependent_import_time_calls(source) == [(2, "time.time"), (3, "time.time"), (4, "os.environ.get")]


@pytest.mark.parametrize(
    "path", sorted((REPO_ROOT / "tests").rglob("*.py")) + sorted((REPO_ROOT / "bench").rglob("*.py")),
    ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_module_of_the_suite_or_the_bench_computes_time_machine_or_environment_values_at_import(path: Path) -> None:
    assert dependent_import_time_calls(path.read_text()) == []
