#!/usr/bin/env python3
"""Fail when a secret value appears in a log, as it is or encoded.

The secrets come from YAML files (e.g. a Molecule scenario's secrets.yml, the stand-in for a
vault: every string value of 8 characters or more, read recursively) and from register
directories, where the run's tests and scripts leave each secret they make (a generated key,
a vault's passwords) as one file: `record()` below, into $SHIPSHAPE_SECRETS_DIR, which
scripts/run_scenarios.py sets for each job. A file there ending in .yml, .yaml or .json is
read like a secrets.yml; any other file is one secret, its whole content.

Each value is searched for as it is, URL-escaped, and base64-encoded (standard and URL-safe
alphabets, alone or at any offset inside a longer base64 text). A multi-line value (a private
key) is searched for line by line too. Only the names of leaking secrets are printed, never
the values.

  check_log_secrets.py --secrets molecule/app/secrets.yml [--secrets-dir DIR] LOG [LOG ...]
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

REGISTER_VARIABLE = "SHIPSHAPE_SECRETS_DIR"
MIN_LENGTH = 8
# Shorter encoded fragments would match by chance in a long log.
MIN_ENCODED = 12
# Lines that every key of a kind shares, so they are no secret: the first body line of an
# OpenSSH private key ("openssh-key-v1", cipher, KDF, key count, key type), the same in every
# unencrypted ed25519 key.
PUBLIC_LINES = ("b3BlbnNzaC1rZXktdjE",)


def record(name: str, value: str) -> None:
    """Register a secret for the run's log scan: a file of mode 0600 named after it in
    $SHIPSHAPE_SECRETS_DIR. Outside a run that sets the variable, nothing happens."""
    directory = os.environ.get(REGISTER_VARIABLE)
    if not directory or not value:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path / re.sub(r"[^A-Za-z0-9_.-]", "_", name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value)


def secret_values(data, path=""):
    """(name, value) for every secret string in DATA (a parsed YAML/JSON document or a string)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from secret_values(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from secret_values(value, f"{path}[{i}]")
    elif isinstance(data, str) and len(data.strip()) >= MIN_LENGTH:
        yield path, data.strip()
        # A multi-line secret (a private key) leaks just as well line by line.
        lines = data.strip().splitlines()
        if len(lines) > 1:
            for n, line in enumerate(lines):
                if len(line.strip()) >= 16 and not line.startswith(("-----", *PUBLIC_LINES)):
                    yield f"{path} (line {n + 1})", line.strip()


def read_secret_file(path: Path) -> list:
    text = path.read_text(errors="replace")
    if path.suffix in (".yml", ".yaml", ".json"):
        import yaml  # here: scripts/demo.py imports this module under any python3 (`make demo-down`)

        return list(secret_values(yaml.safe_load(text) or {}, ""))
    return list(secret_values(text, path.name))


def read_register(directory: Path) -> list:
    """The secrets left in a register directory (see record())."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        found += [(f"{path.name}: {name}" if path.suffix in (".yml", ".yaml", ".json") else name, value)
                  for name, value in read_secret_file(path)]
    return found


def _base64_fragments(raw: bytes) -> set:
    """What base64 text of RAW looks like anywhere in a longer base64 text: for each of the
    three offsets it may start at, the characters that depend on RAW's bytes alone."""
    fragments = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        start = 4 if shift else 0          # the first group mixes in bytes before RAW
        usable = (shift + len(raw)) // 3 * 4  # the last partial group mixes in bytes after it
        fragment = encoded[start:usable]
        if len(fragment) >= MIN_ENCODED:
            fragments.add(fragment)
    return fragments


def encoded_forms(value: str) -> list:
    """(form, text) for every way the value may show up in a log besides as it is."""
    raw = value.encode()
    forms = [("URL-escaped", quote(value, safe="")), ("form-encoded", quote_plus(value)),
             ("base64", base64.b64encode(raw).decode().rstrip("="))]
    for fragment in sorted(_base64_fragments(raw)):
        forms += [("base64", fragment), ("URL-safe base64", fragment.replace("+", "-").replace("/", "_"))]
    seen, result = {value}, []
    for form, text in forms:
        if text not in seen and len(text) >= MIN_ENCODED:
            seen.add(text)
            result.append((form, text))
    return result


def find_leaks(secrets: list, logs: list) -> list:
    """'LOG: the value of NAME appears in the output[, FORM]' for every secret in a log."""
    leaks = []
    texts = [(log, Path(log).read_text(errors="replace")) for log in logs if Path(log).exists()]
    for name, value in secrets:
        needles = [("", value), *((f", {form}", text) for form, text in encoded_forms(value))]
        for log, text in texts:
            for form, needle in needles:
                if needle in text:
                    leaks.append(f"{log}: the value of {name} appears in the output{form}")
                    break
    return leaks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secrets", action="append", default=[], type=Path,
                        help="YAML file whose string values are secrets (repeatable)")
    parser.add_argument("--secrets-dir", action="append", default=[], type=Path,
                        help="register directory of secrets, one file each (repeatable)")
    parser.add_argument("logs", nargs="+", type=Path, help="log files to search")
    args = parser.parse_args(argv)
    secrets = []
    for path in args.secrets:
        secrets += read_secret_file(path)
    for directory in args.secrets_dir:
        secrets += read_register(directory)
    sources = ", ".join(map(str, [*args.secrets, *args.secrets_dir]))
    if not secrets:
        print(f"check_log_secrets: no secret values in {sources or 'no source given'}", file=sys.stderr)
        return 1
    leaks = find_leaks(secrets, args.logs)
    for leak in leaks:
        print(f"SECRET LEAK: {leak}", file=sys.stderr)
    if not leaks:
        print(f"check_log_secrets: {len(secrets)} secret values, none in "
              f"{', '.join(str(p) for p in args.logs)}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
