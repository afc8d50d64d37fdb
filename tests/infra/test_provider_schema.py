"""Every resource type, attribute and block in infra/terraform exists in the google provider
(6.50 schema, pruned into google_provider_schema.json by build_provider_schema.py): what
`terraform validate` would catch first, without downloading the provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .hcl_config import META_ARGUMENTS, MODULE, TERRAFORM, Config, unquote

SCHEMA = json.loads((Path(__file__).with_name("google_provider_schema.json")).read_text())
# Types of other providers: their arguments, checked the same way.
OTHER_PROVIDERS = {
    "data": {"archive_file": {"type": None, "source_dir": None, "output_path": None}},
    "resource": {},
}


def unknown_names(body: dict, schema: dict, path: str) -> list[str]:
    problems = []
    for key, value in body.items():
        if key in META_ARGUMENTS:
            continue
        if key == "dynamic":
            for dynamic in value:
                for label, inner in dynamic.items():
                    name = unquote(label)
                    if name not in schema or schema[name] is None:
                        problems.append(f"{path}.{name} (dynamic) is not a block")
                        continue
                    for content in inner.get("content", []):
                        problems += unknown_names(content, schema[name], f"{path}.{name}")
            continue
        if key not in schema:
            problems.append(f"{path}.{key}")
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) and v.get("__is_block__") for v in value):
            if schema[key] is None:
                problems.append(f"{path}.{key} is an attribute, written as a block")
                continue
            for block in value:
                problems += unknown_names(block, schema[key], f"{path}.{key}")
    return problems


@pytest.mark.parametrize("folder", [TERRAFORM, MODULE], ids=["root", "push_worker"])
def test_every_resource_attribute_and_block_exists_in_the_provider_schema(folder):
    config = Config(folder)
    problems = []
    for kind in ("resource", "data"):
        known = {**SCHEMA[kind], **OTHER_PROVIDERS[kind]}
        for resource_type, name, body in config.blocks(kind):
            if resource_type not in known:
                problems.append(f"{kind} type {resource_type} (regenerate the schema if it is new)")
                continue
            problems += unknown_names(body, known[resource_type], f"{resource_type}.{name}")
    assert not problems, "unknown to the google provider " + SCHEMA["provider_version"] + ":\n" + "\n".join(problems)


def test_the_checker_catches_a_misspelt_attribute():
    body = {"template": [{"containers": [{"imagee": '"x"', "__is_block__": True}], "__is_block__": True}]}
    assert unknown_names(body, SCHEMA["resource"]["google_cloud_run_v2_service"], "s") == [
        "s.template.containers.imagee"
    ]
