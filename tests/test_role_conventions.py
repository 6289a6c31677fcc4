"""Every role keeps the project's conventions (DESIGN.md):

- defaults/main.yml, meta/main.yml, meta/argument_specs.yml, README.md exist;
- every public variable carries the role's prefix and has a one-line comment above it;
- argument_specs lists exactly the defaults, with the same default values;
- the README's variable table is the one generated from argument_specs;
- every task and handler has a capitalised name and uses a fully qualified module name.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ROLES = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir())
TASK_KEYWORDS = {
    "name", "when", "tags", "register", "loop", "loop_control", "notify", "become", "become_user",
    "changed_when", "failed_when", "check_mode", "no_log", "ignore_errors", "until", "retries",
    "delay", "vars", "environment", "delegate_to", "run_once", "args", "block", "rescue", "always",
    "listen", "with_items", "with_dict", "async", "poll", "diff", "throttle", "any_errors_fatal",
    "module_defaults", "ignore_unreachable", "timeout", "delegate_facts", "become_method",
    "become_flags", "with_fileglob", "with_together", "with_subelements", "with_nested",
}


def role_ids():
    return [r.name for r in ROLES]


def load(path: Path):
    return yaml.safe_load(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("role", ROLES, ids=role_ids())
def test_role_has_the_standard_files(role):
    for rel in ("defaults/main.yml", "meta/main.yml", "meta/argument_specs.yml", "README.md",
                "tasks/main.yml"):
        assert (role / rel).is_file(), f"{role.name}: missing {rel}"


@pytest.mark.parametrize("role", ROLES, ids=role_ids())
def test_public_variables_are_prefixed_and_commented(role):
    lines = (role / "defaults/main.yml").read_text().splitlines()
    defaults = load(role / "defaults/main.yml") or {}
    for name in defaults:
        assert name.startswith(f"{role.name}_"), f"{role.name}: {name} lacks the role prefix"
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
        above = lines[index - 1].strip() if index else ""
        assert above.startswith("#"), f"{role.name}: {name} has no one-line comment above it"


@pytest.mark.parametrize("role", ROLES, ids=role_ids())
def test_argument_specs_match_defaults(role):
    defaults = load(role / "defaults/main.yml") or {}
    specs = load(role / "meta/argument_specs.yml")["argument_specs"]["main"].get("options") or {}
    missing = sorted(set(defaults) - set(specs))
    extra = sorted(n for n in set(specs) - set(defaults) if not specs[n].get("required"))
    assert not missing, f"{role.name}: defaults not in argument_specs: {missing}"
    assert not extra, f"{role.name}: argument_specs options without a default in defaults/main.yml: {extra}"
    for name, value in defaults.items():
        assert "description" in specs[name], f"{role.name}: {name} has no description"
        if isinstance(value, str) and "{{" in value:
            continue  # templated defaults are documented as written
        assert specs[name].get("default") == value, (
            f"{role.name}: {name} default differs: defaults/main.yml={value!r} "
            f"argument_specs={specs[name].get('default')!r}")


def test_readme_variable_tables_are_current():
    proc = subprocess.run([sys.executable, str(REPO / "scripts/role_docs.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def _tasks(items, where):
    for item in items or []:
        if not isinstance(item, dict):
            continue
        yield item, where
        for key in ("block", "rescue", "always"):
            yield from _tasks(item.get(key), where)


@pytest.mark.parametrize("role", ROLES, ids=role_ids())
def test_tasks_and_handlers_are_named_and_fully_qualified(role):
    files = list((role / "tasks").glob("*.yml")) + list((role / "handlers").glob("*.yml"))
    for path in files:
        for task, where in _tasks(load(path), path.relative_to(REPO)):
            name = task.get("name", "")
            assert name and name[0].isupper(), f"{where}: task without a capitalised name: {task}"
            modules = [k for k in task if k not in TASK_KEYWORDS]
            for module in modules:
                assert "." in module, f"{where}: '{name}' uses {module} without its FQCN"
