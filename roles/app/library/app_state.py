#!/usr/bin/python
"""Ansible module of the app role: what the server runs now (releases, slots, ledger)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: app_state
short_description: Describe the releases and slots of an app on the server
description:
  - Reads the app's directory O(root) and asks Docker about the Compose project of each slot,
    and reports the release that serves, the releases on the server, what each slot runs, which
    slot is live and which is idle, and the release ledger.
  - Nothing changes on the server. When Docker does not answer, RV(docker) is false and the
    container counts are 0.
options:
  root:
    description: The app's directory (C(current), C(releases/), C(slots/) and C(releases.jsonl) are in it).
    type: str
    required: true
  projects:
    description: "Compose project name of each slot, for example V({a: example-a, b: example-b})."
    type: dict
    required: true
  web_service:
    description: Compose service that serves HTTP.
    type: str
    default: web
attributes:
  check_mode:
    support: full
    description: The module only reads, so it runs the same in check mode.
author: shipshape
"""

EXAMPLES = r"""
- name: Read what the server runs
  app_state:
    root: /srv/example
    projects: {a: example-a, b: example-b}
    web_service: web
  register: state

- name: Show the live slot
  ansible.builtin.debug:
    msg: "Slot {{ state.live_slot }} serves {{ state.current_id }}; slot {{ state.idle_slot }} is idle."
"""

RETURN = r"""
current:
  description: The release.json of the release that serves (C(ROOT/current)); empty when none serves.
  type: dict
  returned: always
current_id:
  description: Id of the release that serves; its release.json's C(id), else the name the C(current) link points at; empty when none serves.
  type: str
  returned: always
releases:
  description:
    - The releases on the server (directories under C(ROOT/releases)), sorted by id. Each has
      C(id), C(path), C(mtime) (of the directory) and, from its release.json, C(image),
      C(image_id), C(commit), C(version) and C(fingerprint); a directory without a readable
      release.json has only C(id), C(path) and C(mtime).
  type: list
  elements: dict
  returned: always
slots:
  description:
    - Per slot (the keys of O(projects)) - C(release) (the release its link C(ROOT/slots/SLOT)
      points at, or empty), C(containers) (containers of its Compose project, in any state),
      C(running) (those running) and C(web_running) (whether a container of O(web_service) runs).
  type: dict
  returned: always
live_slot:
  description:
    - The slot that serves - the one whose release is the current one; when both or neither
      are, the only one of them that also runs its web service. Empty when it cannot be told.
  type: str
  returned: always
idle_slot:
  description: The other slot (V(a) when RV(live_slot) is empty).
  type: str
  returned: always
ledger:
  description: The last 200 entries of the release ledger (C(ROOT/releases.jsonl)), oldest first; lines that are not JSON objects are left out.
  type: list
  elements: dict
  returned: always
docker:
  description: Whether Docker answered every question about the slots' containers.
  type: bool
  returned: always
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

RELEASE_FIELDS = ("image", "image_id", "commit", "version", "fingerprint")
LEDGER_KEEP = 200
PS_FORMAT = '{{.Label "com.docker.compose.service"}}\t{{.State}}'


def read_json(path: str) -> dict:
    """Return the JSON object in the file at *path*, or {} when it is missing or not one."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def link_name(path: str) -> str:
    """Return the last part of the target of the symbolic link at *path*; empty when it is none."""
    try:
        target = os.readlink(path)
    except OSError:
        return ""
    return os.path.basename(os.path.normpath(target))


def list_releases(root: str) -> list[dict]:
    """Describe the release directories under ROOT/releases, sorted by id."""
    base = os.path.join(root, "releases")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    releases = []
    for name in names:
        path = os.path.join(base, name)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            continue
        release = {"id": name, "path": path, "mtime": mtime}
        info = read_json(os.path.join(path, "release.json"))
        if info:
            release.update({field: str(info.get(field) or "") for field in RELEASE_FIELDS})
        releases.append(release)
    return releases


def parse_ledger(text: str, keep: int = LEDGER_KEEP) -> list[dict]:
    """Return the JSON objects of the ledger *text* (one per line), the last *keep* of them."""
    entries = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            entries.append(value)
    return entries[-keep:] if keep > 0 else []


def read_ledger(root: str) -> list[dict]:
    """Return the entries of ROOT/releases.jsonl; none when it cannot be read."""
    try:
        with open(os.path.join(root, "releases.jsonl"), encoding="utf-8", errors="replace") as handle:
            return parse_ledger(handle.read())
    except OSError:
        return []


def parse_ps(output: str, web_service: str) -> dict:
    """Count the containers in ``docker ps -a`` output of the form ``SERVICE<TAB>STATE`` per line.

    Returns {containers, running, web_running}."""
    containers = running = 0
    web_running = False
    for line in output.splitlines():
        if not line.strip():
            continue
        service, _, state = line.partition("\t")
        containers += 1
        if state.strip() == "running":
            running += 1
            if service.strip() == web_service:
                web_running = True
    return {"containers": containers, "running": running, "web_running": web_running}


def ps_argv(docker: str, project: str) -> list[str]:
    """The argv of ``docker ps`` that lists the containers of a Compose project with their state."""
    return [docker, "ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "--format", PS_FORMAT]


def pick_slots(slots: dict, current_id: str) -> tuple[str, str]:
    """Return (live, idle) from the slots' descriptions and the id of the release that serves.

    The live slot is the one whose release is *current_id*; when both or neither are, the only
    one that is the current release and runs its web service; else none (''). The idle slot is
    the other one ('a' when none is live)."""
    names = sorted(slots)
    matching = [name for name in names if current_id and slots[name].get("release") == current_id]
    if len(matching) == 1:
        live = matching[0]
    else:
        serving = [name for name in matching if slots[name].get("web_running")]
        live = serving[0] if len(serving) == 1 else ""
    if not live:
        return "", "a" if "a" in slots or not names else names[0]
    others = [name for name in names if name != live]
    return live, others[0] if others else ""


def describe(root: str, projects: dict, web_service: str, run_ps) -> dict:
    """Describe the app under *root*. *run_ps(project)* returns the ``docker ps`` output of a
    Compose project, or None when Docker does not answer."""
    current = read_json(os.path.join(root, "current", "release.json"))
    current_id = str(current.get("id") or "") or link_name(os.path.join(root, "current"))
    docker_ok = True
    slots = {}
    for slot in sorted(projects):
        output = run_ps(str(projects[slot]))
        if output is None:
            docker_ok = False
            counts = {"containers": 0, "running": 0, "web_running": False}
        else:
            counts = parse_ps(output, web_service)
        slots[slot] = {"release": link_name(os.path.join(root, "slots", slot)), **counts}
    live, idle = pick_slots(slots, current_id)
    return {
        "current": current,
        "current_id": current_id,
        "releases": list_releases(root),
        "slots": slots,
        "live_slot": live,
        "idle_slot": idle,
        "ledger": read_ledger(root),
        "docker": docker_ok,
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "str", "required": True},
            "projects": {"type": "dict", "required": True},
            "web_service": {"type": "str", "default": "web"},
        },
        supports_check_mode=True,
    )
    docker = module.get_bin_path("docker")

    def run_ps(project: str):
        if not docker:
            return None
        rc, out, _ = module.run_command(ps_argv(docker, project), check_rc=False)
        return out if rc == 0 else None

    result = describe(module.params["root"], module.params["projects"], module.params["web_service"], run_ps)
    if not docker:
        result["docker"] = False
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
