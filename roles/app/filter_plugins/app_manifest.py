"""Filter of the app role: the app's manifest (shipshape.yml), read and checked against its
JSON schema (files/shipshape.schema.json), each problem named with its line.

The schema uses a small part of JSON Schema (type, properties, required,
additionalProperties, items, enum, pattern, minItems, minLength, $ref to $defs); this checks
exactly that part, so the controller needs no library beyond Ansible's own PyYAML.
tests/test_app_manifest.py proves it agrees with the `jsonschema` package on the examples.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "files" / "shipshape.schema.json"
TYPES = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}
KINDS = {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number",
         bool: "true or false", type(None): "empty"}


def load_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def _kind(value) -> str:
    return KINDS.get(type(value), type(value).__name__)


def _is(value, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, TYPES[name])


def schema_errors(value, schema: dict, root: dict, path: tuple = ()) -> list:
    """[(path, message)] for each way *value* breaks *schema* (the subset named above)."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    wanted = schema.get("type")
    if wanted and not _is(value, wanted):
        return [(path, f"must be {KINDS[TYPES[wanted]]}, not {_kind(value)}")]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append((path, f"must be one of {', '.join(map(str, schema['enum']))}, not {value!r}"))
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append((path, "must not be empty"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append((path, f"{value!r} does not match {schema['pattern']}"))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append((path, f"needs at least {schema['minItems']} item(s)"))
        for index, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), root, path + (index,))
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append((path, f"needs the key {key}"))
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], root, path + (key,))
            elif schema.get("additionalProperties") is False:
                known = ", ".join(properties) or "none"
                errors.append((path + (key,), f"is not a key of the contract (known here: {known})"))
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], root, path + (key,))
    return errors


def _line(node, path: tuple) -> int | None:
    """The line (1-based) of the YAML node at *path*, or of the nearest node above it."""
    line = node.start_mark.line + 1 if node is not None else None
    for step in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == step), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _path_text(path: tuple) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text or "the file"


def app_manifest(text, name: str = "shipshape.yml") -> dict:
    """The manifest in *text* (empty or None: the app has none) as {"manifest": {...},
    "errors": ["shipshape.yml line 7: hooks.before_switch[0].argv: must be a list, not a
    string", ...]}; with errors the manifest is {}."""
    if text is None or not str(text).strip():
        return {"manifest": {}, "errors": []}
    try:
        node = yaml.compose(str(text), Loader=yaml.SafeLoader)
        data = yaml.safe_load(str(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return {"manifest": {}, "errors": [f"{name}{where}: not YAML: {problem}"]}
    schema = load_schema()
    found = schema_errors(data if data is not None else {}, schema, schema)
    errors = []
    for path, message in found:
        line = _line(node, path)
        errors.append(f"{name}{f' line {line}' if line else ''}: {_path_text(path)}: {message}")
    return {"manifest": {} if errors else (data or {}), "errors": errors}


ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ARTIFACT_URL = re.compile(r"^(https?|ftp|file)://\S+$")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def app_artifacts(artifacts, urls=None) -> dict:
    """The artifacts to fetch, from app_artifacts (the manifest's, or the inventory's list)
    with the URLs of app_artifact_urls (name -> URL) winning, as {"artifacts": [{name, url,
    sha256}], "errors": [...]}; each error names the variable and the fix."""
    urls = urls or {}
    errors, plan, names = [], [], []
    if not isinstance(artifacts, list):
        return {"artifacts": [], "errors": [f"app_artifacts must be a list of {{name, url, sha256}}, not {_kind(artifacts)}"]}
    if not isinstance(urls, dict):
        return {"artifacts": [], "errors": [f"app_artifact_urls must map an artifact's name to its URL, not {_kind(urls)}"]}
    for index, item in enumerate(artifacts):
        where = f"app_artifacts[{index}]"
        if not isinstance(item, dict):
            errors.append(f"{where} must be a mapping {{name, url, sha256}}, not {_kind(item)}")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not ARTIFACT_NAME.match(name):
            errors.append(f"{where}.name must be a file name (letters, digits, . _ -), not {name!r}")
            continue
        where = f"the artifact {name}"
        if name in names:
            errors.append(f"{where} is listed twice in app_artifacts")
            continue
        names.append(name)
        sha256 = item.get("sha256")
        if not isinstance(sha256, str) or not SHA256.match(sha256):
            errors.append(f"{where} needs sha256: its 64 hexadecimal digits (sha256sum FILE)")
            continue
        url = urls.get(name, item.get("url"))
        if not url:
            errors.append(f"{where} has no URL: set app_artifact_urls: {{{name}: https://...}} in the inventory, "
                          "or url in the app's shipshape.yml")
            continue
        if not isinstance(url, str) or not ARTIFACT_URL.match(url):
            errors.append(f"{where}: its URL must start with http://, https://, ftp:// or file:// "
                          "(app_artifact_urls or url in shipshape.yml)")
            continue
        plan.append({"name": name, "url": url, "sha256": sha256.lower()})
    for name in urls:
        if name not in names:
            errors.append(f"app_artifact_urls names {name}, which is not an artifact of the app "
                          f"(its artifacts: {', '.join(names) or 'none'})")
    return {"artifacts": [] if errors else plan, "errors": errors}


STATIC_PATH = re.compile(r"^/\S*$")
APP_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*/$")


def app_static(static) -> dict:
    """The frontend nginx serves (app_static: the manifest's static, or the inventory's) as
    {"static": {path, app_paths} or {}, "errors": [...]}; each error names the variable."""
    if static in (None, {}):
        return {"static": {}, "errors": []}
    if not isinstance(static, dict):
        return {"static": {}, "errors": [f"app_static must be a mapping {{path, app_paths}}, not {_kind(static)}"]}
    errors = []
    path = static.get("path")
    if not isinstance(path, str) or not STATIC_PATH.match(path):
        errors.append(f"app_static.path must be the directory in the image that holds index.html, e.g. /app/dist, not {path!r}")
    app_paths = static.get("app_paths", [])
    if not isinstance(app_paths, list) or not all(isinstance(p, str) and APP_PATH.match(p) for p in app_paths):
        errors.append(f"app_static.app_paths must be a list of path prefixes such as /api/ (a / at each end), not {app_paths!r}")
    unknown = sorted(set(static) - {"path", "app_paths"})
    if unknown:
        errors.append(f"app_static has unknown keys: {', '.join(map(str, unknown))} (known: path, app_paths)")
    if errors:
        return {"static": {}, "errors": errors}
    return {"static": {"path": path.rstrip("/") or "/", "app_paths": list(app_paths)}, "errors": []}


class FilterModule:
    """The app manifest filters."""

    def filters(self):
        return {"app_manifest": app_manifest, "app_artifacts": app_artifacts, "app_static": app_static}
