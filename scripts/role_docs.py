#!/usr/bin/env python3
"""Keep each role's README variable table in step with its meta/argument_specs.yml.

The table sits in roles/ROLE/README.md between the markers
`<!-- BEGIN VARIABLES -->` and `<!-- END VARIABLES -->` and is generated from the
`main` entry point of the role's argument specs.

  role_docs.py            rewrite the tables of every role
  role_docs.py --check    exit 1 and name the roles whose table is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BEGIN = "<!-- BEGIN VARIABLES -->"
END = "<!-- END VARIABLES -->"


def _cell(value) -> str:
    text = value if isinstance(value, str) and value else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(role_dir: Path) -> str:
    specs = yaml.safe_load((role_dir / "meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"].get("options", {}) or {}
    lines = ["| Variable | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for name, spec in options.items():
        if spec.get("required"):
            default = "(required)"
        elif "default" in spec:
            default = f"`{_cell(spec['default'])}`"
        else:
            default = "(none)"
        description = spec.get("description", "")
        if isinstance(description, list):
            description = " ".join(description)
        lines.append(f"| `{name}` | {spec.get('type', 'str')} | {default} | {_cell(description)} |")
    return "\n".join(lines)


def render(readme: str, new_table: str) -> str | None:
    if BEGIN not in readme or END not in readme:
        return None
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{new_table}\n{END}{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; change nothing")
    parser.add_argument("roles", nargs="*", help="role names (default: all)")
    args = parser.parse_args(argv)
    role_dirs = [REPO / "roles" / r for r in args.roles] or sorted(
        p for p in (REPO / "roles").iterdir() if (p / "meta/argument_specs.yml").exists())
    problems = []
    for role_dir in role_dirs:
        readme_path = role_dir / "README.md"
        readme = readme_path.read_text() if readme_path.exists() else ""
        updated = render(readme, table(role_dir))
        if updated is None:
            problems.append(f"{readme_path.relative_to(REPO)}: no {BEGIN} ... {END} markers")
        elif updated != readme:
            if args.check:
                problems.append(f"{readme_path.relative_to(REPO)}: variable table out of date "
                                "(run scripts/role_docs.py)")
            else:
                readme_path.write_text(updated)
                print(f"updated {readme_path.relative_to(REPO)}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
