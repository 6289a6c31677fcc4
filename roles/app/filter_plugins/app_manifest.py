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


class FilterModule:
    """The app manifest filter."""

    def filters(self):
        return {"app_manifest": app_manifest}
