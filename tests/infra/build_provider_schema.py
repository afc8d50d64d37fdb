"""Regenerate ``google_provider_schema.json``: the google provider's resource, data-source,
attribute and block names for the types ``infra/terraform`` uses.

``terraform validate`` needs the provider binary, which cannot be downloaded offline. The npm
package ``@cdktf/provider-google`` is generated from the provider's schema: each resource's
``synthesizeAttributes()`` and each nested block's ``...ToTerraform(struct)`` function list
the HCL names, so they are read from its JavaScript.

    npm install --prefix /tmp/cdktf --ignore-scripts @cdktf/provider-google@16.12.1
    python tests/infra/build_provider_schema.py /tmp/cdktf/node_modules/@cdktf/provider-google
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import hcl2

HERE = Path(__file__).resolve().parent
TERRAFORM_DIR = HERE.parents[1] / "infra" / "terraform"
OUTPUT = HERE / "google_provider_schema.json"

_TYPE = re.compile(r'tfResourceType = "(google_[a-z0-9_]+)"')
_PROVIDER_VERSION = re.compile(r"providerVersion: '([^']+)'")
_ENTRY = re.compile(r"^\s*([a-z0-9_]+): (.*?),?$")
_CONVERTER = re.compile(r"(?<![.\w])([a-zA-Z0-9]+ToTerraform)\b")


def _object_body(source: str, start: int) -> list[str]:
    """Lines of the ``return { ... }`` object literal that opens at or after ``start``."""
    open_at = source.index("return {", start) + len("return {")
    depth, i = 1, open_at
    while depth:
        depth += {"{": 1, "}": -1}.get(source[i], 0)
        i += 1
    return source[open_at : i - 1].splitlines()


def _fields(source: str, start: int, seen: frozenset[str] = frozenset()) -> dict:
    fields: dict = {}
    for line in _object_body(source, start):
        match = _ENTRY.match(line)
        if not match:
            continue
        name, expression = match.groups()
        converter = _CONVERTER.search(expression)
        if converter and converter.group(1) not in seen:
            at = source.index(f"function {converter.group(1)}(struct)")
            fields[name] = _fields(source, at, seen | {converter.group(1)})
        else:
            fields[name] = None
    return fields


def read_type(index_js: Path) -> tuple[str, str, dict]:
    source = index_js.read_text()
    resource_type = _TYPE.search(source).group(1)
    version = _PROVIDER_VERSION.search(source).group(1)
    return resource_type, version, _fields(source, source.index("synthesizeAttributes() {"))


def used_types(terraform_dir: Path) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {"resource": set(), "data": set()}
    for tf in terraform_dir.rglob("*.tf"):
        parsed = hcl2.load(tf.open())
        for kind in used:
            for block in parsed.get(kind, []):
                used[kind].update(name.strip('"') for name in block if name.startswith('"google'))
    return used


def main(package_dir: str) -> None:
    lib = Path(package_dir) / "lib"
    wanted = used_types(TERRAFORM_DIR)
    schema: dict = {"provider_version": "", "resource": {}, "data": {}}
    # Folders: lib/cloud-run-v2-service for google_cloud_run_v2_service, lib/data-google-project
    # for data "google_project".
    for kind in ("resource", "data"):
        for resource_type in sorted(wanted[kind]):
            stem = "data_" + resource_type if kind == "data" else resource_type.removeprefix("google_")
            folder = stem.replace("_", "-")
            found, version, fields = read_type(lib / folder / "index.js")
            assert found == resource_type, (found, resource_type)
            schema[kind][resource_type] = fields
            schema["provider_version"] = version
    OUTPUT.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT} (google provider {schema['provider_version']})")


if __name__ == "__main__":
    main(sys.argv[1])
