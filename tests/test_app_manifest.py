"""The app contract: shipshape.yml read and checked against its JSON schema by the app role's
filter app_manifest, which names the line and the key of each problem. Its checker covers the
part of JSON Schema the schema uses; it agrees with the jsonschema package on every example."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("app_manifest", REPO / "roles/app/filter_plugins/app_manifest.py")
app_manifest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app_manifest)

GOOD = (REPO / "examples/django-app/shipshape.yml").read_text()

# (manifest text, the error it must give)
BAD = [
    ("preset: rails\n", "shipshape.yml line 1: preset: must be one of none, django, not 'rails'"),
    ("contract: 2\n", "shipshape.yml line 1: contract: must be one of 1, not 2"),
    ("web:\n  service: web\n  health_path: health\n",
     "shipshape.yml line 3: web.health_path: 'health' does not match"),
    ("compose_files: compose.yaml\n", "shipshape.yml line 1: compose_files: must be a list, not a string"),
    ("compose_files: []\n", "shipshape.yml line 1: compose_files: needs at least 1 item(s)"),
    ("hooks:\n  before_switch:\n    - name: migrate\n      argv: python3 manage.py migrate\n",
     "shipshape.yml line 4: hooks.before_switch[0].argv: must be a list, not a string"),
    ("hooks:\n  before_switch:\n    - argv: [true]\n",
     "shipshape.yml line 3: hooks.before_switch[0]: needs the key name"),
    ("hooks:\n  after_deploy: []\n",
     "shipshape.yml line 2: hooks.after_deploy: is not a key of the contract (known here: before_switch, after_switch)"),
    ("once_services: [worker, 'bad name']\n", "shipshape.yml line 1: once_services[1]: 'bad name' does not match"),
    ("stateful:\n  env_keys: [POSTGRES-USER]\n", "shipshape.yml line 2: stateful.env_keys[0]: 'POSTGRES-USER' does not match"),
    ("build_args:\n  DEBUG: 1\n", "shipshape.yml line 2: build_args.DEBUG: must be a string, not a number"),
    ("webb: {}\n", "shipshape.yml line 1: webb: is not a key of the contract"),
    ("- just\n- a list\n", "shipshape.yml line 1: the file: must be a mapping, not a list"),
    ("web: [\n", "shipshape.yml line 2: not YAML"),
]


def test_the_examples_manifest_is_valid_and_read_whole():
    result = app_manifest.app_manifest(GOOD)
    assert result["errors"] == []
    assert result["manifest"]["preset"] == "django"
    assert result["manifest"]["once_services"] == ["worker"]
    assert result["manifest"]["stateful"]["files"] == ["compose.db.yaml"]


@pytest.mark.parametrize("text", [None, "", "# only a comment\n"])
def test_no_manifest_is_an_empty_contract(text):
    assert app_manifest.app_manifest(text) == {"manifest": {}, "errors": []}


@pytest.mark.parametrize("text, error", BAD, ids=[error.split(": ", 1)[1][:40] for _, error in BAD])
def test_a_bad_manifest_is_refused_with_its_line_and_key(text, error):
    result = app_manifest.app_manifest(text)
    assert result["manifest"] == {}
    assert any(found.startswith(error) for found in result["errors"]), result["errors"]


@pytest.mark.parametrize("text", [GOOD] + [text for text, _ in BAD if not text.startswith("web: [")])
def test_the_checker_agrees_with_jsonschema(text):
    schema = app_manifest.load_schema()
    data = yaml.safe_load(text)
    ours = app_manifest.schema_errors(data, schema, schema)
    theirs = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    assert bool(ours) == bool(theirs), (ours, [e.message for e in theirs])


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(app_manifest.load_schema())
