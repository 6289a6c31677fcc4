#!/usr/bin/python
"""Ansible module of the app role: several small files written in one step, each only when
its content, mode or owner differs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: app_write
short_description: Write several small files of the app in one task
description:
  - Makes each file of O(files) hold exactly its C(content), with its C(mode), C(owner) and
    C(group), and creates O(directory) first when it is given. One task instead of one
    M(ansible.builtin.copy) per file - a deploy that changes nothing pays one round trip.
  - A file whose content differs is replaced atomically (a temporary file in the same
    directory, flushed to disk, renamed over it); a file whose content is right but whose mode
    or owner differs is corrected in place. A file that is right is not touched.
  - The contents are never shown (they may hold secrets, for example an env file); the result
    names the files that changed.
options:
  files:
    description: The files.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the file. Its directory must exist (or be O(directory)).
        type: str
        required: true
      content:
        description: What the file holds, exactly.
        type: str
        required: true
        no_log: true
      mode:
        description: Permissions, as octal text (V('0640')).
        type: raw
        required: true
      owner:
        description: User that owns the file (a name or a numeric id); unset keeps the current user.
        type: str
      group:
        description: Group of the file (a name or a numeric id); unset keeps the current group.
        type: str
  directory:
    description: A directory created (with its missing parents) or corrected before the files are written.
    type: dict
    suboptions:
      path:
        description: Absolute path of the directory.
        type: str
        required: true
      mode:
        description: Permissions, as octal text (V('0750')).
        type: raw
        required: true
      owner:
        description: User that owns the directory.
        type: str
      group:
        description: Group of the directory.
        type: str
  owner:
    description: User that owns the files and the directory that name none of their own.
    type: str
  group:
    description: Group of the files and the directory that name none of their own.
    type: str
attributes:
  check_mode:
    support: full
    description: Reports which files would change, and writes nothing.
author: shipshape
"""

EXAMPLES = r"""
- name: Write the stateful services' files
  app_write:
    directory: {path: /srv/example/stateful, mode: "0750"}
    files:
      - {path: /srv/example/stateful/compose.db.yaml, content: "{{ compose_text }}", mode: "0640"}
      - {path: /srv/example/stateful/.env, content: "{{ env_text }}", mode: "0600"}
    owner: deploy
    group: deploy
  register: written
"""

RETURN = r"""
changed_files:
  description: Paths of the files (and the directory) that were written or corrected, or would be in check mode.
  type: list
  elements: str
  returned: always
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils import app_files


def differences(path: str, content: bytes | None, mode: int, uid: int, gid: int) -> dict:
    """What differs between the file (or, with content None, the directory) at *path* and what
    it should be: {"missing", "content", "mode", "owner"} flags."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return {"missing": True}
    wrong_type = not (stat.S_ISDIR(info.st_mode) if content is None else stat.S_ISREG(info.st_mode))
    if wrong_type:
        return {"missing": True}
    found = {}
    if content is not None:
        with open(path, "rb") as handle:
            found["content"] = handle.read() != content
    found["mode"] = stat.S_IMODE(info.st_mode) != mode
    found["owner"] = (uid != -1 and info.st_uid != uid) or (gid != -1 and info.st_gid != gid)
    return {key: value for key, value in found.items() if value}


def ensure_directory(spec: dict, check_mode: bool) -> bool:
    """Create or correct the directory of *spec*; return whether it changed."""
    path = spec["path"]
    mode = app_files.parse_mode(spec["mode"])
    uid, gid = app_files.resolve_ids(spec.get("owner"), spec.get("group"))
    diff = differences(path, None, mode, uid, gid)
    if not diff or check_mode:
        return bool(diff)
    if diff.get("missing"):
        if os.path.lexists(path):
            raise ValueError(f"{path} exists and is not a directory")
        os.makedirs(path, mode)  # missing parents too (0755 less the umask, like mkdir -p)
    os.chmod(path, mode)
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)
    return True


def ensure_file(spec: dict, check_mode: bool) -> bool:
    """Make the file of *spec* hold its content with its mode and owner; return whether it changed."""
    path = spec["path"]
    if not os.path.isabs(path):
        raise ValueError(f"{path} is not an absolute path")
    content = spec["content"].encode("utf-8")
    mode = app_files.parse_mode(spec["mode"])
    uid, gid = app_files.resolve_ids(spec.get("owner"), spec.get("group"))
    diff = differences(path, content, mode, uid, gid)
    if not diff or check_mode:
        return bool(diff)
    if diff.get("missing") or diff.get("content"):
        if os.path.isdir(path):
            raise ValueError(f"{path} is a directory")
        if not os.path.isdir(os.path.dirname(path)):
            raise ValueError(f"the directory of {path} does not exist")
        app_files.write_atomic(path, spec["content"], mode, uid, gid)
    else:
        os.chmod(path, mode)
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
    return True


def main():
    file_options = {
        "path": {"type": "str", "required": True},
        "content": {"type": "str", "required": True, "no_log": True},
        "mode": {"type": "raw", "required": True},
        "owner": {"type": "str"},
        "group": {"type": "str"},
    }
    directory_options = {key: value for key, value in file_options.items() if key != "content"}
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True, "options": file_options},
            "directory": {"type": "dict", "options": directory_options},
            "owner": {"type": "str"},
            "group": {"type": "str"},
        },
        supports_check_mode=True,
    )
    defaults = {"owner": module.params["owner"], "group": module.params["group"]}

    def with_defaults(spec: dict) -> dict:
        return {**spec, **{key: value for key, value in defaults.items() if spec.get(key) is None}}

    changed_files = []
    current = None
    try:
        if module.params["directory"]:
            current = module.params["directory"]["path"]
            if ensure_directory(with_defaults(module.params["directory"]), module.check_mode):
                changed_files.append(current)
        for spec in module.params["files"]:
            current = spec["path"]
            if ensure_file(with_defaults(spec), module.check_mode):
                changed_files.append(current)
    except (ValueError, OSError) as exc:
        module.fail_json(msg=f"cannot write {current}: {exc}", changed=bool(changed_files),
                         changed_files=changed_files)
    module.exit_json(changed=bool(changed_files), changed_files=changed_files)


if __name__ == "__main__":
    main()
