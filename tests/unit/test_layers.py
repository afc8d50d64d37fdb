"""The package layout is the architecture: each module imports only its own layer and the ones
below it, so the tree can be read as the design (docs/code-map.md)."""

from __future__ import annotations

import ast
from pathlib import Path

from workers.core.settings import REPO_ROOT

# Lowest first. A module may import modules of its own layer and of the layers before it.
LAYERS = (
    ("core", ("workers.core",)),
    ("adapters", ("workers.adapters",)),
    ("processing", ("workers.processing",)),  # the handlers and workers: against the core's ports, no engine
    ("engines, ops, report, tools", ("workers.engines", "workers.ops", "workers.report", "workers.training",
                                     "workers.setup")),
    ("composition root", ("workers.composition",)),
    ("entry points", ("workers.entrypoints", "workers.__main__", "devstack", "trigger")),
)


def layer_of(module: str) -> int | None:
    if module in ("workers", "workers.PIPELINE_VERSION"):
        return 0  # the package itself holds only its version
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_module_imports_only_its_own_layer_and_the_ones_below() -> None:
    files = [p for folder in ("workers", "devstack", "trigger") for p in (REPO_ROOT / folder).rglob("*.py")]
    assert len(files) > 50
    upward = []
    for path in files:
        module = module_name(path)
        own = layer_of(module)
        assert own is not None, f"{module} is in no layer: add its room to LAYERS and to docs/code-map.md"
        for imported in imports(path):
            theirs = layer_of(imported)
            if theirs is not None and theirs > own:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {imported} ({LAYERS[theirs][0]})")
    assert not upward, "\n".join(sorted(upward))


def test_the_cloud_function_needs_only_the_core_the_adapters_and_the_root() -> None:
    light = {"core", "adapters", "composition root"}
    for path in [*(REPO_ROOT / "workers" / "core").rglob("*.py"), *(REPO_ROOT / "workers" / "adapters").rglob("*.py"),
                 REPO_ROOT / "workers" / "composition.py", REPO_ROOT / "trigger" / "main.py"]:
        tree = ast.parse(path.read_text())
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in top_level:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                rank = layer_of(name)
                assert rank is None or LAYERS[rank][0] in light, f"{module_name(path)} imports {name} at load"


def test_the_command_line_builds_no_client_or_ledger_of_its_own() -> None:
    """Clients (Google's, the ledger, the BigQuery loader) are wired in the composition root; commands ask it."""
    wiring = ("google.cloud", "google.auth", "workers.ops.ledger.Ledger", "workers.ops.bq_load.BigQueryLoader",
              "workers.adapters.gcs", "workers.adapters.pubsub")
    cli = REPO_ROOT / "workers" / "entrypoints" / "cli"
    found = [f"{module_name(path)} imports {name}" for path in cli.rglob("*.py")
             for name in imports(path) if name.startswith(wiring)]
    assert not found, found


def test_the_device_is_chosen_in_one_place() -> None:
    """'auto' becomes cuda or cpu in workers/engines/device.py only, not in each engine."""
    asks = ("torch.cuda.is_available", "get_cuda_device_count")
    found = [str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "workers").rglob("*.py")
             if p.name != "device.py" and any(a in p.read_text() for a in asks)]
    assert not found, found


def test_no_two_modules_import_each_other_even_inside_a_function() -> None:
    """A cycle (a imports b, b imports a, at load or lazily) makes two modules one; find it here, not at run time."""
    files = {module_name(p): p for folder in ("workers", "devstack", "trigger")
             for p in (REPO_ROOT / folder).rglob("*.py")}
    graph = {m: {i for i in imports(p) if i in files and i != m} for m, p in files.items()}
    # every import of a name inside a module (``from a.b import c``) also lists a.b.c: keep the modules only
    cycles = set()
    for start in graph:
        stack, seen = [(start, (start,))], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.add(" -> ".join(path + (start,)))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + (nxt,)))
    assert not cycles, sorted(cycles)[:5]
