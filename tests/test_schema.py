"""One schema: the exported JSON Schema is current, and real results validate against it."""

from __future__ import annotations

import json

import jsonschema

from mtls_matrix.results import json_schema
from tests.conftest import REPO


def test_exported_schema_is_up_to_date():
    exported = REPO / "docs" / "results.schema.json"
    assert exported.read_text() == json_schema(), "regenerate: mtls-matrix schema > docs/results.schema.json"


def test_a_real_run_validates_against_the_exported_schema(run_matrix):
    results, _ = run_matrix("--servers", "tornado", "--clients", "aiohttp[ssl=context]",
                            "--scenarios", "mtls-ok,client-no-cert", "-n", "0")
    jsonschema.validate(json.loads(results.model_dump_json()), json.loads(json_schema()))
