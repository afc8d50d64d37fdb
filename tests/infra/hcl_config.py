"""Terraform parsed with python-hcl2 for the structural tests (no provider, no cloud)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import hcl2

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform"
MODULE = TERRAFORM / "modules" / "push_worker"
META_ARGUMENTS = {"count", "for_each", "depends_on", "lifecycle", "provider", "__is_block__", "__comments__"}


def unquote(value: Any) -> Any:
    """hcl2 keeps string literals quoted ('"x"') and wraps expressions as '${...}'."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def expression(value: Any) -> str:
    """The HCL expression text of an attribute value ('${var.x}' -> 'var.x')."""
    text = str(value)
    match = re.fullmatch(r"\$\{(.*)\}", text, flags=re.S)
    return match.group(1) if match else text


class Config:
    """All blocks of one Terraform module folder."""

    def __init__(self, folder: Path) -> None:
        self.files = {path.name: hcl2.load(path.open()) for path in sorted(folder.glob("*.tf"))}

    def blocks(self, kind: str) -> Iterator[tuple[str, str, dict]]:
        """(type, name, body) of every `kind` block ("resource", "data"); (name, "", body) for
        single-label blocks ("variable", "output", "module")."""
        for parsed in self.files.values():
            for block in parsed.get(kind, []):
                for first, inner in block.items():
                    if kind in ("resource", "data"):
                        for name, body in inner.items():
                            yield unquote(first), unquote(name), body
                    else:
                        yield unquote(first), "", inner

    def resources(self, resource_type: str) -> dict[str, dict]:
        return {name: body for kind, name, body in self.blocks("resource") if kind == resource_type}

    def locals(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for parsed in self.files.values():
            for block in parsed.get("locals", []):
                merged.update({k: v for k, v in block.items() if k != "__is_block__"})
        return merged

    def variable_defaults(self) -> dict[str, Any]:
        return {name: body.get("default") for name, _, body in self.blocks("variable")}

    def modules(self) -> dict[str, dict]:
        return {name: body for name, _, body in self.blocks("module")}


def sub_blocks(body: dict, name: str) -> list[dict]:
    """Nested blocks called `name`, written directly or as `dynamic "name" { content {...} }`."""
    found = list(body.get(name, []))
    for dynamic in body.get("dynamic", []):
        for label, inner in dynamic.items():
            if unquote(label) == name:
                found.extend(inner.get("content", []))
    return found
