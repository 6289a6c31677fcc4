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
  stateful_project:
    description: Compose project of the app's stateful services; described in RV(stateful) when given.
    type: str
    default: ""
  network:
    description: Docker network the app's projects share; RV(network_exists) says whether it exists.
    type: str
    default: ""
  images:
    description: Images (C(name:tag)) whose presence in the engine RV(images_present) reports.
    type: list
    elements: str
    default: []
  commands:
    description: Commands the deploy needs on the server; RV(commands_missing) names those not on the PATH.
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
      C(image_id), C(commit), C(version), C(fingerprint) and (when it lists them) C(services);
      a directory without a readable release.json has only C(id), C(path) and C(mtime).
  type: list
  elements: dict
  returned: always
slots:
  description:
    - Per slot (the keys of O(projects)) - C(release) (the release its link C(ROOT/slots/SLOT)
      points at, or empty), C(containers) (containers of its Compose project, in any state),
      C(running) (those running), C(web_running) (whether a container of O(web_service) runs)
      and C(ready) (the services with a running container that is not unhealthy or still
      starting, sorted).
  type: dict
  returned: always
stateful:
  description: The same counts as a slot's (without C(release)) for O(stateful_project); empty when it is not given.
  type: dict
  returned: always
network_exists:
  description: Whether the network O(network) exists; false when it is not given.
  type: bool
  returned: always
images_present:
  description: The images of O(images) that the engine has.
  type: list
  elements: str
  returned: always
commands_missing:
  description: The commands of O(commands) that are not on the PATH.
  type: list
  elements: str
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
PS_FORMAT = '{{.Label "com.docker.compose.service"}}\t{{.State}}\t{{.Status}}'
# A running container whose status says so is not ready: its health check fails or has not passed yet.
NOT_READY = ("(unhealthy)", "(health: starting)")


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
            if isinstance(info.get("services"), list):
                release["services"] = [str(service) for service in info["services"]]
            if isinstance(info.get("static"), dict):
                release["static"] = info["static"]
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
    """Count the containers in ``docker ps -a`` output of the form ``SERVICE<TAB>STATE<TAB>STATUS``
    per line. Returns {containers, running, web_running, ready}: *ready* lists the services with
    a running container whose health check (if any) passes."""
    containers = running = 0
    web_running = False
    ready = set()
    for line in output.splitlines():
        if not line.strip():
            continue
        service, _, rest = line.partition("\t")
        state, _, status = rest.partition("\t")
        service = service.strip()
        containers += 1
        if state.strip() == "running":
            running += 1
            if service == web_service:
                web_running = True
            if not any(mark in status for mark in NOT_READY):
                ready.add(service)
    return {"containers": containers, "running": running, "web_running": web_running, "ready": sorted(ready)}


def parse_images(output: str, wanted: list) -> list:
    """The images of *wanted* among the ``REPOSITORY:TAG`` lines of ``docker images`` output
    (a name without a tag is the tag ``latest``)."""
    have = {line.strip() for line in output.splitlines()}
    return [image for image in wanted
            if image in have or (":" not in image.rsplit("/", 1)[-1] and f"{image}:latest" in have)]


def ps_argv(project: str) -> list[str]:
    """The arguments of ``docker`` that list the containers of a Compose project with their state."""
    return ["ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "--format", PS_FORMAT]


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


def describe(root: str, projects: dict, web_service: str, run_ps, stateful_project: str = "") -> dict:
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
            counts = parse_ps("", web_service)
        else:
            counts = parse_ps(output, web_service)
        slots[slot] = {"release": link_name(os.path.join(root, "slots", slot)), **counts}
    stateful = {}
    if stateful_project:
        output = run_ps(stateful_project)
        docker_ok = docker_ok and output is not None
        stateful = parse_ps(output or "", web_service)
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
        "stateful": stateful,
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "str", "required": True},
            "projects": {"type": "dict", "required": True},
            "web_service": {"type": "str", "default": "web"},
            "stateful_project": {"type": "str", "default": ""},
            "network": {"type": "str", "default": ""},
            "images": {"type": "list", "elements": "str", "default": []},
            "commands": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    docker = module.get_bin_path("docker")

    def run_docker(*argv: str):
        if not docker:
            return None
        rc, out, _ = module.run_command([docker, *argv], check_rc=False)
        return out if rc == 0 else None

    result = describe(params["root"], params["projects"], params["web_service"],
                      lambda project: run_docker(*ps_argv(project)), params["stateful_project"])
    result["network_exists"] = bool(params["network"]) and run_docker("network", "inspect", params["network"]) is not None
    images = run_docker("images", "--format", "{{.Repository}}:{{.Tag}}") if params["images"] else ""
    result["images_present"] = parse_images(images or "", params["images"])
    result["commands_missing"] = [name for name in params["commands"] if not module.get_bin_path(name)]
    if not docker:
        result["docker"] = False
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
