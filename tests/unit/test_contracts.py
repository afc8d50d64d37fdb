"""The JSON Schemas in schemas/, the dataclasses in workers.core.contracts and the BigQuery schema agree."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Literal, get_args, get_origin, get_type_hints

import jsonschema
import pytest

from workers.core import contracts
from workers.core.contracts import SCHEMA_FILES, Result, dumps, from_dict, loads, to_dict

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
GOLDEN = ROOT / "tests" / "data" / "golden"

GOLDEN_FILES = {
    "job.json": contracts.JobMessage,
    "stt_partial.json": contracts.SttPartial,
    "ser_partial.json": contracts.SerPartial,
    "partial_ready.json": contracts.PartialReady,
    "result.json": contracts.Result,
    "result_failed.json": contracts.Result,
}


def schema(cls: type) -> dict:
    return json.loads((SCHEMAS / SCHEMA_FILES[cls]).read_text())


def validator(cls: type) -> jsonschema.Draft202012Validator:
    doc = schema(cls)
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("name, cls", GOLDEN_FILES.items())
def test_golden_example_validates_and_round_trips(name: str, cls: type) -> None:
    data = json.loads((GOLDEN / name).read_text())
    validator(cls).validate(data)
    assert to_dict(from_dict(cls, data)) == data


def test_stored_record_is_one_line_of_canonical_json() -> None:
    result = loads(Result, (GOLDEN / "result.json").read_text())
    line = dumps(result)
    assert "\n" not in line
    assert json.loads(line) == to_dict(result)
    assert dumps(loads(Result, line)) == line


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.pop("engines"),
        lambda r: r.__setitem__("status", "maybe"),
        lambda r: r["job"].__setitem__("job_id", "not-a-hash"),
        lambda r: r["segments"][0]["emotion"].__setitem__("sentiment", "HAPPY"),
        lambda r: r.__setitem__("surprise_field", 1),
    ],
    ids=["missing-field", "bad-status", "bad-job-id", "bad-sentiment", "unknown-field"],
)
def test_schema_rejects_broken_results(mutate) -> None:
    data = json.loads((GOLDEN / "result.json").read_text())
    mutate(data)
    with pytest.raises(jsonschema.ValidationError):
        validator(Result).validate(data)


def test_from_dict_rejects_unknown_fields() -> None:
    data = json.loads((GOLDEN / "job.json").read_text())
    data["extra"] = 1
    with pytest.raises(ValueError, match="unknown field"):
        from_dict(contracts.JobMessage, data)


def _unwrap(tp):
    """(inner type, nullable, repeated)"""
    nullable = repeated = False
    if get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in get_args(tp) if a is not type(None))
        nullable = True
    if get_origin(tp) is list:
        tp = get_args(tp)[0]
        repeated = True
    return tp, nullable, repeated


def _resolve(node: dict, doc: dict) -> dict:
    if "$ref" in node:
        return doc["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _assert_dataclass_matches_schema(cls: type, node: dict, doc: dict, path: str) -> None:
    node = _resolve(node, doc)
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    assert set(node["properties"]) == set(names), path
    # Fields added later have a default (None) and are optional in the schema: old records stay valid.
    without_default = {f.name for f in dataclasses.fields(cls)
                       if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert without_default <= set(node["required"]) <= set(names), path
    assert node["additionalProperties"] is False, path
    for name in names:
        tp, nullable, repeated = _unwrap(hints[name])
        prop = node["properties"][name]
        where = f"{path}.{name}"
        if nullable:
            options = prop["anyOf"]
            assert {"type": "null"} in options, where
            prop = next(o for o in options if o != {"type": "null"})
        else:
            assert "anyOf" not in prop, f"{where} is nullable in the schema only"
        if repeated:
            assert prop["type"] == "array", where
            prop = prop["items"]
        if dataclasses.is_dataclass(tp):
            _assert_dataclass_matches_schema(tp, prop, doc, where)
        elif get_origin(tp) is Literal:
            assert set(prop["enum"]) == set(get_args(tp)), where
        else:
            expected = {int: "integer", float: "number", str: "string", bool: "boolean"}[tp]
            assert prop["type"] == expected, where


@pytest.mark.parametrize("cls", SCHEMA_FILES, ids=lambda c: c.__name__)
def test_dataclass_and_json_schema_have_the_same_fields_and_types(cls: type) -> None:
    doc = schema(cls)
    _assert_dataclass_matches_schema(cls, doc, doc, cls.__name__)


BQ_TYPES = {int: "INT64", float: "FLOAT64", str: "STRING", bool: "BOOL"}


def _assert_dataclass_matches_bigquery(cls: type, bq_fields: list[dict], path: str) -> None:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    assert [f["name"] for f in bq_fields] == names, path
    for f in bq_fields:
        tp, nullable, repeated = _unwrap(hints[f["name"]])
        where = f"{path}.{f['name']}"
        assert f["mode"] == ("REPEATED" if repeated else "NULLABLE" if nullable else "REQUIRED"), where
        if dataclasses.is_dataclass(tp):
            assert f["type"] == "RECORD", where
            _assert_dataclass_matches_bigquery(tp, f["fields"], where)
        elif f["name"].endswith("_at"):
            assert f["type"] == "TIMESTAMP", where
        else:
            assert f["type"] == ("STRING" if get_origin(tp) is Literal else BQ_TYPES[tp]), where


def test_bigquery_schema_matches_the_result_dataclass() -> None:
    bq = json.loads((SCHEMAS / "bigquery" / "results.json").read_text())
    _assert_dataclass_matches_bigquery(Result, bq, "Result")
    assert any(f["name"] == "submitted_at" and f["type"] == "TIMESTAMP" for f in bq)


def test_result_has_no_map_typed_field() -> None:
    """BigQuery has no map: every object in a result must have a fixed set of keys."""
    doc = schema(Result)

    def walk(node):
        if isinstance(node, dict):
            assert "patternProperties" not in node
            if node.get("type") == "object":
                assert node.get("additionalProperties") is False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)


@pytest.mark.parametrize("name", ["stt_partial.json", "ser_partial.json", "result.json", "result_failed.json"])
def test_records_written_before_speakers_existed_stay_valid_and_load(name: str) -> None:
    cls = GOLDEN_FILES[name]
    data = json.loads((GOLDEN / "v0.1" / name).read_text())
    validator(cls).validate(data)
    loaded = from_dict(cls, data)
    assert _shaped_like(to_dict(loaded), data) == data, "nothing of the old record is lost or changed"
    assert getattr(loaded, "speakers", None) is None and getattr(loaded, "channels", None) is None


def _shaped_like(value, like):
    """``value`` with only the keys ``like`` has, at every depth."""
    if isinstance(like, dict):
        return {k: _shaped_like(value[k], v) for k, v in like.items()}
    if isinstance(like, list):
        return [_shaped_like(a, b) for a, b in zip(value, like)]
    return value
