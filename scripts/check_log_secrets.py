#!/usr/bin/env python3
"""Fail when a secret value appears in a log.

The secrets are the string values (8 characters or longer) of one or more YAML files,
e.g. a Molecule scenario's secrets.yml (the stand-in for a vault), read recursively.
Only the names of leaking variables are printed, never the values.

  check_log_secrets.py --secrets molecule/app/secrets.yml LOG [LOG ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def secret_values(data, path=""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from secret_values(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from secret_values(value, f"{path}[{i}]")
    elif isinstance(data, str) and len(data) >= 8:
        yield path, data
        # A multi-line secret (a private key) leaks just as well line by line.
        for n, line in enumerate(data.splitlines()):
            if len(line.strip()) >= 16 and not line.startswith("-----"):
                yield f"{path} (line {n + 1})", line.strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secrets", action="append", required=True, type=Path,
                        help="YAML file whose string values are secrets (repeatable)")
    parser.add_argument("logs", nargs="+", type=Path, help="log files to search")
    args = parser.parse_args(argv)
    secrets = []
    for path in args.secrets:
        secrets += list(secret_values(yaml.safe_load(path.read_text())))
    if not secrets:
        print(f"check_log_secrets: no secret values in {', '.join(map(str, args.secrets))}",
              file=sys.stderr)
        return 1
    leaks = []
    for log in args.logs:
        text = log.read_text(errors="replace")
        for name, value in secrets:
            if value in text:
                leaks.append(f"{log}: the value of {name} appears in the output")
    for leak in leaks:
        print(f"SECRET LEAK: {leak}", file=sys.stderr)
    if not leaks:
        print(f"check_log_secrets: {len(secrets)} secret values, none in "
              f"{', '.join(str(p) for p in args.logs)}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
