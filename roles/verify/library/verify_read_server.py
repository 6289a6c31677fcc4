#!/usr/bin/python
"""Ansible module of the verify role: what the checks read on the server, in one round trip -
the app's recent logs, searched for error lines, and the JSON files of the summary."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: verify_read_server
short_description: Read the app's recent logs and the summary's JSON files on the server
description:
  - Lists the running containers of each Compose project of O(log_projects) (the app's two
    slots; a stopped slot's containers are left out - their last lines are an older
    release's), reads their output of the last O(log_since) (stdout and stderr, as
    C(docker logs) passes them on) and searches it for O(log_pattern). The result is the
    C(app logs) check, RV(log_check) - the first O(log_max_lines) matching lines are in it,
    each after the name of its container, with every value of O(mask_values) masked.
  - Reads each file of O(json_files) as JSON (RV(json_files)).
  - Nothing changes on the server.
options:
  log_projects:
    description: Compose projects whose running containers' logs are searched; none skips the log check.
    type: list
    elements: str
    default: []
  log_since:
    description: How far back the logs are read (C(docker logs --since)), e.g. V(15m).
    type: str
    default: 15m
  log_pattern:
    description: Regular expression of an error line (Python syntax; V((?i)) makes it case-insensitive).
    type: str
    default: '(?i)\b(error|critical|fatal|traceback|exception)\b'
  log_ignore_pattern:
    description: Regular expression of lines ignored even when they match O(log_pattern); empty ignores none.
    type: str
    default: ""
  log_max_lines:
    description: Matching lines kept in the result.
    type: int
    default: 20
  mask_values:
    description: Values replaced by C(********) in the lines kept (the app's secrets); values of 3 characters or fewer are not masked.
    type: list
    elements: str
    default: []
    no_log: true
  json_files:
    description: Files read as JSON.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: The module only reads, so it runs the same in check mode.
author: shipshape
"""

EXAMPLES = r"""
- name: Read the app's logs and the live release's description
  verify_read_server:
    log_projects: [example-a, example-b]
    log_since: 15m
    mask_values: "{{ app_env_secrets.values() | list }}"
    json_files: [/srv/example/current/release.json]
  register: server
"""

RETURN = r"""
log_check:
  description:
    - The C(app logs) check - C(check), C(ok), C(detail) and C(lines) (the matching lines kept,
      masked). It fails when a project cannot be listed, a container's logs cannot be read, no
      container runs, or a line matches. Empty when O(log_projects) is empty.
  type: dict
  returned: always
json_files:
  description: Each file of O(json_files) - its JSON value, or null when it is missing or not JSON.
  type: dict
  returned: always
"""

import json
import re

from ansible.module_utils.basic import AnsibleModule

MASK = "********"
# Terminal colour and cursor sequences some apps print: they are not part of a line's text.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def mask(line: str, secrets: list) -> str:
    """*line* with every secret of more than 3 characters replaced by the mask, longest first."""
    for secret in sorted((s for s in secrets if isinstance(s, str) and len(s) > 3), key=len, reverse=True):
        line = line.replace(secret, MASK)
    return line


def log_check(outputs: dict, list_failed: list, read_failed: list, projects: list, since: str,
              pattern: str, ignore: str, max_lines: int, secrets: list) -> dict:
    """The `app logs` check from the logs of each running container (*outputs*: {container:
    (stdout, stderr)}), the projects that could not be listed and the containers whose logs
    could not be read."""
    search, skip = re.compile(pattern), re.compile(ignore) if ignore else None
    matches = []
    for container in sorted(outputs):
        stdout, stderr = outputs[container]
        for line in stdout.splitlines() + stderr.splitlines():
            text = ANSI.sub("", line)
            if search.search(text) and not (skip and skip.search(text)):
                matches.append(f"{container}  | {line}")
    containers = ", ".join(sorted(outputs))
    if list_failed:
        detail = "docker ps failed for project " + ", ".join(list_failed)
    elif not outputs and not read_failed:
        detail = "no running container in the Compose projects " + ", ".join(projects)
    elif read_failed:
        detail = "docker logs failed for " + ", ".join(read_failed)
    elif matches:
        detail = (f"{len(matches)} lines of the last {since} match {pattern} (containers {containers}); "
                  "the first ones, secrets masked:")
    else:
        detail = f"no line of the last {since} matches {pattern} (containers {containers})"
    return {"check": "app logs", "ok": not (list_failed or read_failed or matches or not outputs),
            "detail": detail, "lines": [mask(line, secrets) for line in matches[:max(max_lines, 0)]]}


def read_json(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def main():
    module = AnsibleModule(
        argument_spec={
            "log_projects": {"type": "list", "elements": "str", "default": []},
            "log_since": {"type": "str", "default": "15m"},
            "log_pattern": {"type": "str", "default": r"(?i)\b(error|critical|fatal|traceback|exception)\b"},
            "log_ignore_pattern": {"type": "str", "default": ""},
            "log_max_lines": {"type": "int", "default": 20},
            "mask_values": {"type": "list", "elements": "str", "default": [], "no_log": True},
            "json_files": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    for name in ("log_pattern", "log_ignore_pattern"):
        try:
            re.compile(params[name])
        except re.error as exc:
            module.fail_json(msg=f"{name} is not a regular expression: {exc}")

    result = {"log_check": {}, "json_files": {path: read_json(path) for path in params["json_files"]}}
    if params["log_projects"]:
        docker = module.get_bin_path("docker") or "docker"
        outputs, list_failed, read_failed = {}, [], []
        for project in params["log_projects"]:
            rc, out, _ = module.run_command(
                [docker, "ps", "--filter", f"label=com.docker.compose.project={project}", "--format", "{{.Names}}"])
            if rc != 0:
                list_failed.append(project)
                continue
            for container in out.split():
                rc, stdout, stderr = module.run_command([docker, "logs", "--since", params["log_since"], container])
                if rc == 0:
                    outputs[container] = (stdout, stderr)
                else:
                    read_failed.append(container)
        result["log_check"] = log_check(outputs, list_failed, sorted(read_failed), params["log_projects"],
                                        params["log_since"], params["log_pattern"], params["log_ignore_pattern"],
                                        params["log_max_lines"], params["mask_values"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
