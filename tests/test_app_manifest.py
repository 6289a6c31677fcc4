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
    ("artifacts:\n  - name: model.npy\n", "shipshape.yml line 2: artifacts[0]: needs the key sha256"),
    ("artifacts:\n  - name: ../model.npy\n    sha256: " + "a" * 64 + "\n",
     "shipshape.yml line 2: artifacts[0].name: '../model.npy' does not match"),
    ("artifacts:\n  - name: model.npy\n    sha256: abc\n",
     "shipshape.yml line 3: artifacts[0].sha256: 'abc' does not match"),
    ("artifacts:\n  - name: model.npy\n    sha256: " + "a" * 64 + "\n    url: s3://bucket/model.npy\n",
     "shipshape.yml line 4: artifacts[0].url: 's3://bucket/model.npy' does not match"),
]

SHA = "0123456789abcdef" * 4


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


# Manifests with a static key, good and bad, beside the examples above.
STATIC = ["static:\n  path: /app/dist\n  app_paths: [/api/]\n", "static:\n  app_paths: [/api/]\n",
          "static:\n  path: /app/dist\n  app_paths: [api]\n"]


@pytest.mark.parametrize("text", [GOOD] + [text for text, _ in BAD if not text.startswith("web: [")] + STATIC)
def test_the_checker_agrees_with_jsonschema(text):
    schema = app_manifest.load_schema()
    data = yaml.safe_load(text)
    ours = app_manifest.schema_errors(data, schema, schema)
    theirs = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    assert bool(ours) == bool(theirs), (ours, [e.message for e in theirs])


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(app_manifest.load_schema())


def test_an_artifact_takes_its_url_from_the_inventory_over_the_manifest():
    artifacts = [{"name": "model.npy", "sha256": SHA.upper(), "url": "https://old.example.test/m.npy"},
                 {"name": "vocab.txt", "sha256": SHA, "url": "file:///srv/data/vocab.txt"}]
    result = app_manifest.app_artifacts(artifacts, {"model.npy": "https://models.example.test/m.npy"})
    assert result == {"errors": [], "artifacts": [
        {"name": "model.npy", "url": "https://models.example.test/m.npy", "sha256": SHA},
        {"name": "vocab.txt", "url": "file:///srv/data/vocab.txt", "sha256": SHA}]}


def test_no_artifacts_is_nothing_to_fetch():
    assert app_manifest.app_artifacts([], {}) == {"artifacts": [], "errors": []}
    assert app_manifest.app_artifacts([], None) == {"artifacts": [], "errors": []}


@pytest.mark.parametrize("artifacts, urls, error", [
    ([{"name": "model.npy", "sha256": SHA}], {},
     "the artifact model.npy has no URL: set app_artifact_urls: {model.npy: https://...}"),
    ([{"name": "model.npy", "sha256": SHA}], {"model.npy": "s3://bucket/m"},
     "the artifact model.npy: its URL must start with http://"),
    ([{"name": "model.npy", "sha256": "abc", "url": "https://x.test/m"}], {},
     "the artifact model.npy needs sha256: its 64 hexadecimal digits"),
    ([{"name": "../etc/passwd", "sha256": SHA, "url": "https://x.test/m"}], {},
     "app_artifacts[0].name must be a file name"),
    ([{"name": "m", "sha256": SHA, "url": "https://x.test/m"}] * 2, {}, "the artifact m is listed twice"),
    ([{"name": "m", "sha256": SHA, "url": "https://x.test/m"}], {"model.npy": "https://x.test/m"},
     "app_artifact_urls names model.npy, which is not an artifact of the app (its artifacts: m)"),
    ("model.npy", {}, "app_artifacts must be a list"),
    ([], ["https://x.test/m"], "app_artifact_urls must map an artifact's name to its URL"),
])
def test_an_artifact_that_cannot_be_fetched_safely_is_refused(artifacts, urls, error):
    result = app_manifest.app_artifacts(artifacts, urls)
    assert result["artifacts"] == []
    assert any(found.startswith(error) for found in result["errors"]), result["errors"]


def test_static_files_are_read_with_their_app_paths():
    assert app_manifest.app_static({"path": "/app/dist/", "app_paths": ["/api/"]}) == {
        "static": {"path": "/app/dist", "app_paths": ["/api/"]}, "errors": []}
    assert app_manifest.app_static({"path": "/app/dist"}) == {"static": {"path": "/app/dist", "app_paths": []}, "errors": []}
    assert app_manifest.app_static({}) == {"static": {}, "errors": []}
    assert app_manifest.app_static(None) == {"static": {}, "errors": []}


@pytest.mark.parametrize("static, error", [
    ({"path": "app/dist"}, "app_static.path must be the directory in the image"),
    ({"app_paths": ["/api/"]}, "app_static.path must be the directory in the image"),
    ({"path": "/app/dist", "app_paths": ["/api"]}, "app_static.app_paths must be a list of path prefixes"),
    ({"path": "/app/dist", "app_paths": "/api/"}, "app_static.app_paths must be a list of path prefixes"),
    ({"path": "/app/dist", "app_paths": ["/a b/"]}, "app_static.app_paths must be a list of path prefixes"),
    ({"path": "/app/dist", "root": "/srv"}, "app_static has unknown keys: root"),
    ("/app/dist", "app_static must be a mapping"),
])
def test_static_files_nginx_cannot_serve_safely_are_refused(static, error):
    result = app_manifest.app_static(static)
    assert result["static"] == {}
    assert any(found.startswith(error) for found in result["errors"]), result["errors"]
