"""Every role keeps the project's conventions (DESIGN.md):

- defaults/main.yml, meta/main.yml, meta/argument_specs.yml, README.md exist;
- every public variable carries the role's prefix and has a one-line comment above it;
- argument_specs lists exactly the defaults, with the same default values;
- the README's variable table is the one generated from argument_specs;
- every task and handler has a capitalised name and uses a fully qualified module name (a
  role's own modules, in its library/ or action_plugins/, by their short name);
- no task destroys Docker volumes: a docker_compose_v2 task that takes a project down keeps
  its volumes and never targets the stateful (data) project, and no command runs
  `down -v` or `--volumes` (the database lives in a volume);
- no secret reaches a Docker command line (`--env NAME=VALUE` and arguments show in `ps`).
"""

from __future__ import annotations

import re
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
        # Blocks, and the task lists of a play (playbooks).
        for key in ("block", "rescue", "always", "pre_tasks", "tasks", "post_tasks", "handlers"):
            yield from _tasks(item.get(key), where)


@pytest.mark.parametrize("role", ROLES, ids=role_ids())
def test_tasks_and_handlers_are_named_and_fully_qualified(role):
    files = list((role / "tasks").glob("*.yml")) + list((role / "handlers").glob("*.yml"))
    # The role's own modules (library/, action_plugins/) are called by their short name.
    own = {p.stem for d in ("library", "action_plugins") for p in (role / d).glob("*.py")}
    for path in files:
        for task, where in _tasks(load(path), path.relative_to(REPO)):
            name = task.get("name", "")
            assert name and name[0].isupper(), f"{where}: task without a capitalised name: {task}"
            modules = [k for k in task if k not in TASK_KEYWORDS]
            for module in modules:
                assert "." in module or module in own, f"{where}: '{name}' uses {module} without its FQCN"


# ------------------------------------------------------------------ volumes hold the data

COMPOSE_MODULES = {"community.docker.docker_compose_v2", "docker_compose_v2"}
COMMAND_MODULES = {prefix + module for prefix in ("", "ansible.builtin.", "ansible.legacy.")
                   for module in ("shell", "command", "raw", "script")}
# The stateful project by variable (app_compose_stateful_project, *_db_project) or by name
# (APP-data), or by its compose file (compose.db*.yaml, app_compose_stateful_files).
STATEFUL = re.compile(r"stateful|db_project|-data\b|compose\.db")
# `down` with -v (alone or among short flags) or --volumes, up to the end of that command.
DESTROYS_VOLUMES = re.compile(r"\bdown\b[^;&|\n]*\s-[A-Za-z]*v\b|--volumes(?![-\w])")


def _module_calls(doc):
    """(module, arguments, task) of every call of a compose or command module in a parsed
    task file or playbook, inside blocks and plays too."""
    for task, _ in _tasks(doc, ""):
        for module in sorted(task.keys() & (COMPOSE_MODULES | COMMAND_MODULES)):
            value = task[module]
            args = dict(task.get("args") or {})
            args.update(value if isinstance(value, dict) else {"cmd": value})
            yield module, args, task


def volume_hazards(doc, where) -> list[str]:
    """What in a parsed task file or playbook could remove the app's volumes."""
    found = []
    for module, args, task in _module_calls(doc):
        name = task.get("name", "?")
        if module in COMPOSE_MODULES:
            if "remove_volumes" in args and args["remove_volumes"] is not False:
                found.append(f"{where}: '{name}' sets remove_volumes: {args['remove_volumes']!r} (must be false)")
            if "absent" in str(args.get("state", "")):
                target = f"{args.get('project_name', '')} {args.get('files', '')}"
                if STATEFUL.search(target):
                    found.append(f"{where}: '{name}' takes the stateful project down ({target.strip()})")
        else:
            argv = args.get("argv")
            command = " ".join(map(str, argv)) if isinstance(argv, list) else str(args.get("cmd", ""))
            if DESTROYS_VOLUMES.search(command):
                found.append(f"{where}: '{name}' runs a command that removes volumes: {command}")
    return found


def test_no_task_removes_volumes():
    files = [*(REPO / "roles").glob("*/tasks/**/*.yml"), *(REPO / "roles").glob("*/handlers/**/*.yml"),
             *(REPO / "playbooks").glob("*.yml"), REPO / "site.yml"]
    found = [hazard for path in files for hazard in volume_hazards(load(path), path.relative_to(REPO))]
    # Scripts and units a role installs run on the server too.
    for path in [*(REPO / "roles").glob("*/templates/**/*"), *(REPO / "roles").glob("*/files/**/*")]:
        if path.is_file() and DESTROYS_VOLUMES.search(path.read_text(errors="replace")):
            found.append(f"{path.relative_to(REPO)} runs a command that removes volumes")
    assert not found, "\n".join(found)


PLANTED = """
- name: Stop the second slot, volumes and all
  community.docker.docker_compose_v2:
    project_name: "{{ app_release_next_project }}"
    state: absent
    remove_volumes: true
- name: Stop the database
  community.docker.docker_compose_v2:
    project_name: "{{ app_compose_stateful_project }}"
    state: absent
- name: Stop the data project
  community.docker.docker_compose_v2:
    project_name: example-data
    state: "{{ 'absent' if wipe else 'present' }}"
    remove_volumes: false
- name: Remove whatever the flag says
  community.docker.docker_compose_v2:
    project_name: example-next
    state: absent
    remove_volumes: "{{ wipe }}"
- name: Wipe in a block
  block:
    - name: Down with volumes
      ansible.builtin.shell: docker compose -p example down -v --remove-orphans
    - name: Down with long volumes
      ansible.builtin.command:
        argv: [docker, compose, down, --volumes]
  rescue:
    - name: Down with combined flags
      ansible.builtin.command:
        cmd: docker compose down -tv 5
- name: Prune everything
  ansible.builtin.shell:
    cmd: docker system prune --all --force --volumes
"""

HARMLESS = """
- name: Stop the second slot
  community.docker.docker_compose_v2:
    project_name: "{{ app_release_next_project }}"
    state: absent
    remove_volumes: false
- name: Stop the app
  community.docker.docker_compose_v2:
    project_name: example
    state: absent
- name: Start the database
  community.docker.docker_compose_v2:
    project_name: "{{ app_compose_stateful_project }}"
    state: present
- name: Stop the app and run a container with a volume
  ansible.builtin.shell: docker compose down --remove-orphans && docker run -v data:/data --volumes-from db debian true
"""


def test_the_volume_guard_catches_planted_hazards():
    found = volume_hazards(yaml.safe_load(PLANTED), "planted.yml")
    assert len(found) == 8, "\n".join(found)
    for name in ("Stop the second slot, volumes and all", "Stop the database", "Stop the data project",
                 "Remove whatever the flag says", "Down with volumes", "Down with long volumes",
                 "Down with combined flags", "Prune everything"):
        assert any(f"'{name}'" in hazard for hazard in found), name
    assert volume_hazards(yaml.safe_load(HARMLESS), "harmless.yml") == []


# ------------------------------------------------------------------ secrets stay off command lines

# Modules whose `env` and `argv`/`command` become arguments of a docker process on the server.
EXEC_MODULES = {"community.docker.docker_compose_v2_exec", "community.docker.docker_compose_v2_run",
                "community.docker.docker_container_exec"}
SECRET_VARIABLE = re.compile(r"password|secret|token|deploy_key|^vault_", re.IGNORECASE)


def _variables(template: str) -> set[str]:
    """The variables a template reads (not attributes, not quoted strings)."""
    names = set()
    for expression in re.findall(r"{{(.*?)}}", template, re.DOTALL):
        expression = re.sub(r"'[^']*'|\"[^\"]*\"", "", expression)
        names.update(re.findall(r"(?<![.\w])[A-Za-z_]\w*", expression))
    return names


def secrets_on_command_lines(doc, where) -> list[str]:
    found = []
    for task, _ in _tasks(doc, where):
        for module in EXEC_MODULES & set(task):
            args = task[module] if isinstance(task[module], dict) else {}
            for key in ("env", "argv", "command"):
                secrets = sorted(n for n in _variables(str(args.get(key, ""))) if SECRET_VARIABLE.search(n))
                if secrets:
                    found.append(f"{where}: '{task.get('name', '?')}' gives {', '.join(secrets)} in {key} "
                                 "(a command line shows in ps; use stdin)")
    return found


def test_no_secret_reaches_a_docker_command_line():
    files = [*(REPO / "roles").glob("*/tasks/**/*.yml"), *(REPO / "roles").glob("*/handlers/**/*.yml")]
    found = [hazard for path in files for hazard in secrets_on_command_lines(load(path), path.relative_to(REPO))]
    assert not found, "\n".join(found)
    planted = yaml.safe_load("""
- name: Create the admin user
  community.docker.docker_compose_v2_exec:
    service: web
    argv: [python3, manage.py, ensure_superuser]
    env: "{{ {'DJANGO_SUPERUSER_PASSWORD': app_superuser_password} }}"
""")
    assert len(secrets_on_command_lines(planted, "planted.yml")) == 1
