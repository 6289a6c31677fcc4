#!/usr/bin/env python3
"""Pre-flight check of an inventory before anything touches a server. It changes nothing.

  validate.py -i inventories/prod [--vault-password-file FILE] [--json]

Checks, each a row of check / status (PASS, WARN, FAIL, SKIP) / detail / fix:
  yaml           every file of the inventory (and the shared group_vars) parses
  vault          vault.yml exists, is encrypted, its password file is private, it decrypts
  secret NAME    each vault_* secret is set, not a placeholder, and strong
  variables      the variables the roles need are set (repository, domains, keys ...)
  hosts          there are servers in group web, with real addresses
  dns NAME       each domain of tls_domains resolves to the server's address
  ssh HOST       SSH logs in with the configured user and key; become HOST: sudo works
  os HOST        Debian of a supported release (preflight_supported_debian_releases)
  disk / memory  free disk where Docker keeps its data, and memory, above the minimum
  port 80/443    the server's web ports can be reached from here (a WARN when not)
  repository     `git ls-remote` finds app_version in app_repo_url
  manifest       the app's shipshape.yml at that version keeps the app contract (its schema)
  artifacts      each file the app pins by sha256 has a URL (app_artifact_urls or the manifest)
  compose        the compose files exist at that version and are valid
  env keys       every key of the app's .env.example is configured
  syntax-check   `ansible-playbook site.yml --syntax-check` passes

How it stays read-only: the inventory is read by Ansible itself (a probe playbook that only
runs debug, ping, `id -u` with become, fact gathering, reading /etc/os-release, `df` and, for a file:// repository on the
server, `tar` of that repository to this machine); DNS and ports are probed with sockets
from here; a remote repository is listed with `git ls-remote` from here (with the deploy key
of the inventory, when it has one, in a temporary file here). `docker compose config` runs
only when Docker Compose v2 is installed here; otherwise the compose files get a structural
check and a WARN says so.

Names without public DNS (test domains) can be listed in shipshape_dns_overrides
({name: address}, like /etc/hosts); such a name is compared with that address and reported
as a WARN, never a PASS. shipshape_public_address names the address the domains must resolve
to when it is not ansible_host's.

Exit status: 0 when no check FAILed (WARN and SKIP allowed), 1 otherwise, 2 on bad usage.
Secret values are never printed.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import configparser
import importlib.util
import io
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inventory_common import (  # noqa: E402
    DOMAIN, EMAIL, REPO_ROOT, REPO_URL, SECRET_NAMES, SECRETS, VaultError, ansible_tool,
    inventory_paths, is_documentation_address, is_placeholder, is_vault_encrypted,
    load_yaml_text, tool_env, vault_decrypt, vault_password_file, weakness,
)

STATUSES = ("PASS", "WARN", "FAIL", "SKIP")
REPO_TAR_LIMIT_KB = 51200
# Settings the probe resolves on every host (through Ansible, so templates and the vault apply).
PROBE_VARS = (
    "shipshape_app_name", "shipshape_domain", "shipshape_deploy_user", "hardening_deploy_user",
    "hardening_deploy_authorized_keys", "app_repo_url", "app_version",
    "app_env", "app_env_secrets", "app_env_example",
    "app_deploy_key", "app_known_hosts", "app_preset", "app_hooks",
    "backups_restic_password", "backups_restic_repository", "backups_restic_enabled",
    "tls_domains", "tls_acme_email", "tls_acme_server",
    "app_compose_files", "app_stateful_files", "app_web_service",
    "app_compose_variables", "app_db_service", "preflight_supported_debian_releases",
    "app_artifacts", "app_artifact_urls",
    "app_image_source", "app_registry_username", "app_registry_password",
    "shipshape_public_address", "shipshape_dns_overrides", "shipshape_public_http_port",
    "shipshape_public_https_port", "shipshape_min_disk_free_mb", "shipshape_min_memory_mb",
)
# Defaults of the optional settings (the same as the roles' and group_vars/all/main.yml).
DEFAULTS = {
    "app_env_example": ".env.example",
    "app_deploy_key": "",
    "app_known_hosts": [],
    "app_compose_files": ["compose.yaml"],
    "app_stateful_files": ["compose.db.yaml"],
    "app_web_service": "web",
    "app_compose_variables": {},
    "app_image_source": "build",
    "app_db_service": "db",
    "preflight_supported_debian_releases": ["12", "13"],
    "shipshape_public_address": "",
    "shipshape_dns_overrides": {},
    "shipshape_public_http_port": 80,
    "shipshape_public_https_port": 443,
    "shipshape_min_disk_free_mb": 5120,
    "shipshape_min_memory_mb": 900,
    "tls_acme_email": "",
}
# The values app_preset takes: the deploy commands of a Django app, or only those of app_hooks.
PRESETS = ("django", "none")
# The stages of app_hooks (before and after the traffic moves to the new release).
HOOK_STAGES = ("before_switch", "after_switch")
# The vault secret each secret key of the app's environment comes from, in the inventories
# prepare.py writes (other keys: vault_ and the key in lower case).
VAULT_NAME_OF = {
    "SECRET_KEY": "vault_django_secret_key",
    "POSTGRES_PASSWORD": "vault_postgres_password",
    "DJANGO_SUPERUSER_PASSWORD": "vault_superuser_password",
}
DOC_ADDRESS_RE = r"^(192[.]0[.]2|198[.]51[.]100|203[.]0[.]113)[.]|^2001:db8:"

PROBE_PLAYBOOK = r"""---
# Written by scripts/validate.py into a temporary directory and run once. Read-only.
- name: Pre-flight probe of scripts/validate.py (read-only)
  hosts: all
  gather_facts: false
  become: false
  tasks:
    - name: Connection settings
      ansible.builtin.debug:
        msg:
          address: "{{ ansible_host | default(inventory_hostname) }}"
          port: "{{ ansible_port | default(ansible_ssh_port | default(22)) }}"
          user: "{{ ansible_user | default(ansible_ssh_user | default('')) }}"
          key: "{{ ansible_ssh_private_key_file | default(ansible_private_key_file | default('')) }}"
          groups: "{{ group_names }}"
          connection: "{{ ansible_connection | default('ssh') }}"

    - name: Settings
      ansible.builtin.debug:
        msg: "{{ lookup('ansible.builtin.vars', item) }}"
      loop: "{{ shipshape_probe_vars }}"
      ignore_errors: true

    - name: Reach the server
      ansible.builtin.ping:
      register: shipshape_probe_ping
      ignore_unreachable: true
      ignore_errors: true
      when: (ansible_host | default(inventory_hostname) | string) is not match(shipshape_probe_doc_re)

    - name: Become root
      ansible.builtin.command: id -u
      become: true
      register: shipshape_probe_become
      changed_when: false
      ignore_unreachable: true
      ignore_errors: true
      when: shipshape_probe_ping is not skipped and shipshape_probe_ping is not unreachable and shipshape_probe_ping is succeeded

    - name: Facts
      ansible.builtin.setup:
        gather_subset: [min, hardware, network]
        gather_timeout: 30
      ignore_unreachable: true
      ignore_errors: true
      when: shipshape_probe_ping is not skipped and shipshape_probe_ping is not unreachable and shipshape_probe_ping is succeeded

    # The release straight from the file the fact collectors read it from.
    - name: OS release
      ansible.builtin.slurp:
        src: /etc/os-release
      ignore_unreachable: true
      ignore_errors: true
      when: shipshape_probe_ping is not skipped and shipshape_probe_ping is not unreachable and shipshape_probe_ping is succeeded

    - name: Free disk space where Docker keeps its data
      ansible.builtin.shell:
        cmd: |
          p=/var/lib/docker
          while [ ! -e "$p" ]; do p=$(dirname "$p"); done
          df -Pk "$p" | tail -n 1
      changed_when: false
      ignore_unreachable: true
      ignore_errors: true
      when: shipshape_probe_ping is not skipped and shipshape_probe_ping is not unreachable and shipshape_probe_ping is succeeded

    - name: Read the app repository on the server
      ansible.builtin.shell:
        cmd: |
          set -o pipefail
          d={{ (app_repo_url | default('') | regex_replace('^file://', '')) | quote }}
          test -d "$d" || { echo "no such directory: $d" >&2; exit 3; }
          test -e "$d/HEAD" || test -e "$d/.git" || { echo "not a Git repository: $d" >&2; exit 4; }
          size=$(du -sk "$d" | cut -f1)
          [ "$size" -le {{ shipshape_probe_tar_limit }} ] || { echo "too large to copy for the check: ${size} KiB" >&2; exit 5; }
          tar -C "$d" -cf - . | base64 -w0
        executable: /bin/bash
      become: "{{ shipshape_probe_become is not skipped and shipshape_probe_become is succeeded }}"
      changed_when: false
      ignore_unreachable: true
      ignore_errors: true
      when:
        - shipshape_probe_ping is not skipped and shipshape_probe_ping is not unreachable and shipshape_probe_ping is succeeded
        - (app_repo_url | default('') | string) is match('file:///')
"""


@dataclass
class Row:
    check: str
    status: str
    detail: str
    fix: str = ""


class Report:
    def __init__(self) -> None:
        self.rows: list = []
        self._secrets: set = set()

    def add(self, check: str, status: str, detail: str, fix: str = "") -> None:
        assert status in STATUSES, status
        self.rows.append(Row(check, status, detail, fix))

    def hide(self, value) -> None:
        """Remember a secret value so that no row ever shows it."""
        if isinstance(value, str) and len(value) >= 6:
            self._secrets.add(value)
            for line in value.splitlines():
                if len(line.strip()) >= 8:
                    self._secrets.add(line.strip())

    def masked(self) -> list:
        out = []
        for row in self.rows:
            fields = {}
            for key, text in asdict(row).items():
                for secret in sorted(self._secrets, key=len, reverse=True):
                    text = text.replace(secret, "********")
                fields[key] = text
            out.append(Row(**fields))
        return out

    @property
    def failed(self) -> bool:
        return any(r.status == "FAIL" for r in self.rows)


def rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- YAML files

def yaml_files(inventory: Path) -> list:
    files = []
    for pattern in ("*.yml", "*.yaml"):
        files += inventory.glob(pattern)
    for sub in ("group_vars", "host_vars"):
        for pattern in ("**/*.yml", "**/*.yaml", "**/*.json"):
            files += (inventory / sub).glob(pattern)
    for pattern in ("**/*.yml", "**/*.yaml"):
        files += (REPO_ROOT / "group_vars").glob(pattern)
    return sorted(set(files))


def check_yaml(report: Report, inventory: Path) -> bool:
    ok = True
    files = yaml_files(inventory)
    if not inventory_paths(inventory)["hosts"].exists() and not list(inventory.glob("hosts*")):
        report.add("yaml", "FAIL", f"{rel(inventory)} has no hosts.yml",
                   "create it (scripts/prepare.py ENV writes a skeleton) and list your server under "
                   "all.children.web.hosts")
        ok = False
    for path in files:
        if is_vault_encrypted(path):
            continue
        try:
            load_yaml_text(path.read_text(errors="replace"), rel(path))
        except ValueError as exc:
            report.add("yaml", "FAIL", f"{exc}", f"fix the YAML syntax of {rel(path)} at that line")
            ok = False
    if ok:
        report.add("yaml", "PASS", f"{len(files)} files parse ({rel(inventory)} and group_vars/)")
    return ok


# --------------------------------------------------------------------------- vault

def check_vault(report: Report, inventory: Path, password_file: Path, pw_source: str,
                env: str, prepare_cmd: str):
    """Returns (vault data or None, whether Ansible can load the inventory)."""
    vault = inventory_paths(inventory)["vault"]
    if not vault.exists():
        report.add("vault", "FAIL", f"{rel(vault)} does not exist: the secrets are missing",
                   f"run {prepare_cmd} (with --domain DOMAIN --repo URL the first time): it generates "
                   f"them and encrypts the vault")
        return None, True
    if not is_vault_encrypted(vault):
        report.add("vault", "FAIL", f"{rel(vault)} is plain text: its secrets are readable by anyone with the file",
                   f"encrypt it: {prepare_cmd} (or ansible-vault encrypt {rel(vault)})")
        try:
            data = load_yaml_text(vault.read_text(), rel(vault))
        except ValueError:
            data = None
        return (data if isinstance(data, dict) else None), True
    if not password_file.exists():
        report.add("vault", "FAIL", f"{rel(vault)} is encrypted, but the vault password file {password_file} "
                   f"({pw_source}) does not exist",
                   "pass the file that holds its password: --vault-password-file FILE "
                   "(or set ANSIBLE_VAULT_PASSWORD_FILE)")
        return None, False
    mode = password_file.stat().st_mode & 0o777
    if mode & 0o077 and not os.access(password_file, os.X_OK):
        report.add("vault", "WARN", f"the vault password file {password_file} is readable by others (mode {mode:04o})",
                   f"chmod 600 {password_file}")
    try:
        text = vault_decrypt(vault, password_file)
    except VaultError as exc:
        report.add("vault", "FAIL", str(exc),
                   "pass the password file this vault was encrypted with (--vault-password-file FILE); "
                   "if the password is lost, move vault.yml aside and run prepare.py again (new secrets)")
        return None, False
    try:
        data = load_yaml_text(text, f"{rel(vault)} (decrypted)")
    except ValueError as exc:
        report.add("vault", "FAIL", str(exc), f"fix it with ansible-vault edit {rel(vault)} --vault-password-file {password_file}")
        return None, False
    if not isinstance(data, dict):
        report.add("vault", "FAIL", f"{rel(vault)} does not hold a mapping of vault_* variables",
                   f"fix it with ansible-vault edit {rel(vault)}")
        return None, False
    for value in data.values():
        report.hide(value if isinstance(value, str) else None)
    report.add("vault", "PASS", f"{rel(vault)} is encrypted and decrypts with {password_file}")
    return data, True


def check_secrets(report: Report, data, prepare_cmd: str, vault: Path) -> None:
    if data is None:
        for name in SECRET_NAMES:
            report.add(f"secret {name}", "SKIP", "not checked: the vault could not be read")
        return
    for secret in SECRETS:
        if secret.name not in data:
            report.add(f"secret {secret.name}", "FAIL", f"{secret.name} ({secret.purpose}) is missing from {rel(vault)}",
                       f"run {prepare_cmd} (it adds missing secrets and keeps the others)")
            continue
        why = weakness(data[secret.name], secret.min_length)
        if why is None:
            report.add(f"secret {secret.name}", "PASS", f"set, {len(str(data[secret.name]))} characters")
        elif why == "is empty or a placeholder":
            report.add(f"secret {secret.name}", "FAIL", f"{secret.name} {why}",
                       f"run {prepare_cmd} (it replaces placeholders with strong random values)")
        else:
            report.add(f"secret {secret.name}", "FAIL", f"{secret.name} {why}",
                       f"run {prepare_cmd} --rotate {secret.name} (a random value; {secret.note})")


# --------------------------------------------------------------------------- the probe

def run_probe(inventory: Path, password_file: Path | None, timeout: int, workdir: Path) -> tuple:
    """Run the read-only probe playbook; returns (parsed JSON or None, error text)."""
    (workdir / "probe.yml").write_text(PROBE_PLAYBOOK)
    for name in ("group_vars", "host_vars"):
        if (REPO_ROOT / name).is_dir():
            (workdir / name).symlink_to(REPO_ROOT / name)
    (workdir / "extra.json").write_text(json.dumps({
        "shipshape_probe_vars": list(PROBE_VARS), "shipshape_probe_doc_re": DOC_ADDRESS_RE,
        "shipshape_probe_tar_limit": REPO_TAR_LIMIT_KB}))
    # The project's settings (SSH options, pipelining), with no callback but the JSON one.
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO_ROOT / "ansible.cfg")
    if config.has_section("defaults"):
        config.remove_option("defaults", "callbacks_enabled")
        config.set("defaults", "roles_path", str(REPO_ROOT / "roles"))
    # An SSH master of this run only, gone seconds after the check.
    if not config.has_section("ssh_connection"):
        config.add_section("ssh_connection")
    config.set("ssh_connection", "ssh_args",
               "-o ControlMaster=auto -o ControlPersist=3s -o ServerAliveInterval=15")
    config.set("ssh_connection", "control_path_dir", str(workdir / "cp"))
    with (workdir / "ansible.cfg").open("w") as fh:
        config.write(fh)
    env = tool_env()
    env.update(ANSIBLE_CONFIG=str(workdir / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_TIMEOUT=str(timeout), ANSIBLE_RETRY_FILES_ENABLED="false",
               ANSIBLE_DEPRECATION_WARNINGS="false", ANSIBLE_HOST_KEY_CHECKING="true",
               ANSIBLE_SSH_RETRIES="0")
    cmd = [ansible_tool("ansible-playbook"), str(workdir / "probe.yml"), "-i", str(inventory),
           "-e", f"@{workdir / 'extra.json'}"]
    if password_file is not None:
        cmd += ["--vault-password-file", str(password_file)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir,
                              timeout=timeout * 12 + 120, check=False)
    except subprocess.TimeoutExpired:
        return None, "the probe playbook did not finish in time"
    start = proc.stdout.find("{")
    if start < 0:
        return None, (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}")[-1500:]
    try:
        return json.loads(proc.stdout[start:]), ""
    except json.JSONDecodeError:
        return None, (proc.stderr.strip() or proc.stdout.strip())[-1500:]


def probe_results(data: dict) -> dict:
    """{host: {task name: result}} from the json callback's output."""
    hosts = {}
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            name = task["task"]["name"]
            for host, result in task.get("hosts", {}).items():
                hosts.setdefault(host, {})[name] = result
    return hosts


def settings_of(results: dict) -> tuple:
    """(values, errors) of the resolved settings of one host; undefined ones are absent."""
    values, errors = {}, {}
    for item in results.get("Settings", {}).get("results", []):
        name = item.get("item")
        if item.get("failed"):
            msg = str(item.get("msg", ""))
            if re.search(r"No variable (found with this name|named)", msg) and name in msg:
                continue
            errors[name] = msg
        else:
            values[name] = item.get("msg")
    return values, errors


# --------------------------------------------------------------------------- variables

def check_variables(report: Report, hostvars: dict, inventory: Path, prepare_cmd: str,
                    vault_values: set) -> None:
    main = rel(inventory_paths(inventory)["main"])
    problems = []  # (variable, detail, fix)
    require_backups = (REPO_ROOT / "roles" / "backups").is_dir()
    seen = set()

    def problem(var, detail, fix):
        if (var, detail) not in seen:
            seen.add((var, detail))
            problems.append((var, detail, fix))

    for host, (values, errors) in hostvars.items():
        on = f" (host {host})" if len(hostvars) > 1 else ""
        for name, msg in errors.items():
            undefined = re.findall(r"'?(vault_[A-Za-z0-9_]+|[a-z_][a-z0-9_]*)'? is undefined", msg)
            if undefined:
                which = ", ".join(sorted(set(undefined)))
                fix = (f"run {prepare_cmd} (it generates the missing vault_* secrets)"
                       if any(u.startswith("vault_") for u in undefined)
                       else f"define {which} in {main}")
                problem(name, f"{name} refers to {which}, which is not defined{on}", fix)
            else:
                first = msg.strip().splitlines()[0][:300] if msg.strip() else "cannot be evaluated"
                problem(name, f"{name} cannot be evaluated{on}: {first}", f"fix {name} in {main}")

        def need(name, ok, detail, fix):
            if name in errors:
                return
            if name not in values:
                problem(name, f"{name} is not set{on}", fix)
            elif not ok(values[name]):
                problem(name, detail.format(v=values[name]) + on, fix)

        need("shipshape_app_name", lambda v: isinstance(v, str) and re.match(r"^[a-z][a-z0-9_-]*$", v),
             "shipshape_app_name is '{v}': lower-case letters, digits, - and _ only",
             f"set shipshape_app_name in {main} (or prepare.py --app-name)")
        need("app_repo_url",
             lambda v: isinstance(v, str) and not is_placeholder(v) and REPO_URL.match(v),
             "app_repo_url ('{v}') is empty, a placeholder or not a Git URL",
             f"set app_repo_url in {main} (https://, ssh://, git@host:path or file:///path), "
             f"e.g. with {prepare_cmd} --repo URL")
        need("app_version", lambda v: v is not None and not is_placeholder(str(v)),
             "app_version is empty", f"set app_version (a branch, tag or commit) in {main}")
        need("app_env", lambda v: isinstance(v, dict), "app_env is not a mapping",
             f"set app_env (KEY: value) in {main}")
        need("app_env_secrets", lambda v: isinstance(v, dict) and v,
             "app_env_secrets is empty or not a mapping",
             f"map the app's secret keys to the vault in {main}, e.g. SECRET_KEY: \"{{{{ vault_django_secret_key }}}}\"")
        if "app_preset" in values and values["app_preset"] not in PRESETS:
            problem("app_preset", f"app_preset is '{values['app_preset']}': it is django or none{on}",
                    f"set app_preset in {main} to django (a Django app: its migrations and admin user) "
                    f"or none (only the commands of app_hooks)")
        hooks = values.get("app_hooks")
        if "app_hooks" in values and hooks is not None:
            for detail in hook_problems(hooks):
                problem("app_hooks", f"app_hooks {detail}{on}",
                        f"fix app_hooks in {main}: {{before_switch: [...], after_switch: [...]}}, each "
                        f"hook with a name and an argv list, e.g. {{name: migrate, argv: [python3, manage.py, "
                        f"migrate, --noinput]}}")
        if require_backups:
            need("backups_restic_password", lambda v: isinstance(v, str) and not is_placeholder(v) and len(v) >= 16,
                 "backups_restic_password is empty, a placeholder or shorter than 16 characters",
                 f"map it to the vault in {main}: backups_restic_password: \"{{{{ vault_restic_password }}}}\"")
            if values.get("backups_restic_enabled", True) not in (False, "false", "no"):
                need("backups_restic_repository", lambda v: isinstance(v, str) and v and not is_placeholder(v),
                     "backups_restic_repository is empty: the off-site backup copies have nowhere to go",
                     f"set backups_restic_repository in {main} (sftp:user@host:/path, s3:host/bucket/path, "
                     f"rest:https://host/ or a local path), or backups_restic_enabled: false")
        need("hardening_deploy_authorized_keys",
             lambda v: isinstance(v, list) and v and all(isinstance(k, str) and re.match(
                 r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-\S+|sk-\S+) [A-Za-z0-9+/]+={0,2}( |$)", k.strip()) for k in v),
             "hardening_deploy_authorized_keys is empty or holds something that is not an OpenSSH public key line",
             f"list your public key(s) (the contents of ~/.ssh/id_ed25519.pub) in {main}; after hardening "
             f"only these keys log in")
        need("tls_domains",
             lambda v: isinstance(v, list) and v and all(isinstance(d, dict) and d.get("name") for d in v),
             "tls_domains is empty or an entry has no name",
             f"set the domain in {main} (tls_domains: [{{name: NAME}}]), e.g. with {prepare_cmd} --domain NAME")
        for entry in values.get("tls_domains") or []:
            names = [entry.get("name")] + list(entry.get("aliases") or []) if isinstance(entry, dict) else []
            for name in names:
                if isinstance(name, str) and name and not DOMAIN.match(name):
                    problem("tls_domains", f"tls_domains holds '{name}', which is not a lower-case public host "
                            f"name with a dot{on}", f"fix the name in {main} (e.g. with {prepare_cmd} --domain NAME)")
        email = values.get("tls_acme_email", "")
        if email and not EMAIL.match(str(email)):
            problem("tls_acme_email", f"tls_acme_email '{email}' is not an email address{on}",
                    f"set a valid address in {main} (or prepare.py --email)")
        secrets_map = values.get("app_env_secrets")
        if isinstance(secrets_map, dict):
            for key, value in secrets_map.items():
                report.hide(value if isinstance(value, str) else None)
                vault_name = VAULT_NAME_OF.get(str(key), f"vault_{str(key).lower()}")
                mapped = f"{key}: \"{{{{ {vault_name} }}}}\" in {main}"
                vault_file = rel(inventory_paths(inventory)["vault"])
                if is_placeholder(value) or not str(value).strip():
                    fill = (f"run {prepare_cmd} (it replaces placeholders with strong random values)"
                            if vault_name in SECRET_NAMES else
                            f"put {vault_name} with a strong value in the vault (ansible-vault edit {vault_file})")
                    problem(f"app_env_secrets.{key}", f"app_env_secrets.{key} is not set or a placeholder{on}",
                            f"map it to a vault secret ({mapped}) and {fill}")
                    continue
                if "PASSWORD" in str(key).upper() and len(str(value)) < 12:
                    fill = (f"{prepare_cmd} --rotate {vault_name} generates one" if vault_name in SECRET_NAMES
                            else f"ansible-vault edit {vault_file}")
                    problem(f"app_env_secrets.{key}",
                            f"app_env_secrets.{key} is shorter than 12 characters{on}",
                            f"keep it in the vault ({mapped}) with 12 characters or more: {fill}")
                    continue
                if isinstance(value, str) and value in vault_values:
                    continue  # a vault secret: its row is "secret vault_..."
                why = weakness(value, 12)
                if why:
                    problem("app_env_secrets", f"app_env_secrets.{key} {why}{on}",
                            f"keep secrets in the vault with strong values ({prepare_cmd} generates them)")
        for name in ("backups_restic_password", "app_deploy_key", "app_registry_password"):
            report.hide(values.get(name) if isinstance(values.get(name), str) else None)
        # The registry login of the pull source: a user and a password, or neither.
        if values.get("app_image_source", DEFAULTS["app_image_source"]) == "pull":
            login = {name: str(values.get(name) or "") for name in
                     ("app_registry_username", "app_registry_password")}
            empty = [name for name, value in login.items() if not value]
            if len(empty) == 1:
                other = next(name for name in login if name not in empty)
                problem(empty[0], f"{empty[0]} is empty while {other} is set{on}: the registry login "
                        f"needs both", f"set both in {main} (the password from the vault, e.g. "
                        f"app_registry_password: \"{{{{ vault_registry_password }}}}\"), or neither "
                        f"for a public registry")

    for var, detail, fix in problems:
        report.add(f"variable {var}", "FAIL", detail, fix)
    if not problems:
        report.add("variables", "PASS", "the settings the roles need are set "
                   "(repository, version, env, secrets mapping, domains, authorized keys)")
    emails = {str(v.get("tls_acme_email") or "") for v, _ in hostvars.values()}
    if emails == {""}:
        report.add("variables", "WARN", "tls_acme_email is empty: no certificate expiry notices",
                   f"set it in {main} (or prepare.py --email)")


def hook_problems(hooks) -> list:
    """What is wrong with the shape of app_hooks ([] when nothing): a mapping of stages, each a
    list of hooks with a name and a non-empty argv list of strings."""
    if not isinstance(hooks, dict):
        return ["is not a mapping of " + " and ".join(HOOK_STAGES)]
    found = []
    for stage, entries in hooks.items():
        if stage not in HOOK_STAGES:
            found.append(f"has the stage '{stage}'; the stages are {' and '.join(HOOK_STAGES)}")
            continue
        if entries is None:
            continue
        if not isinstance(entries, list):
            found.append(f"{stage} is not a list of hooks")
            continue
        for n, hook in enumerate(entries, 1):
            label = f"{stage} hook {n}"
            if not isinstance(hook, dict):
                found.append(f"{label} is not a mapping (name, argv, ...)")
                continue
            if hook.get("name"):
                label = f"{stage} hook '{hook['name']}'"
            else:
                found.append(f"{label} has no name")
            argv = hook.get("argv")
            if not (isinstance(argv, list) and argv and all(isinstance(a, (str, int, float)) for a in argv)):
                found.append(f"{label}: argv is not a non-empty list of words (the command and its arguments)")
            unless = hook.get("unless")
            if unless is not None and not (isinstance(unless, list) and unless):
                found.append(f"{label}: unless is not a list of words (a command)")
    return found


def check_hosts(report: Report, conn: dict, inventory: Path) -> list:
    """Returns the hosts the SSH checks apply to."""
    hosts_file = rel(inventory_paths(inventory)["hosts"])
    if not conn:
        report.add("hosts", "FAIL", f"{hosts_file} lists no server",
                   f"add your server under all.children.web.hosts in {hosts_file}")
        return []
    reachable = []
    web = [h for h, c in conn.items() if "web" in (c.get("groups") or [])]
    if not web:
        report.add("hosts", "FAIL", f"no server is in group web ({', '.join(conn)})",
                   f"put the app server under all.children.web.hosts in {hosts_file}: site.yml deploys the app there")
    db = [h for h, c in conn.items() if "db" in (c.get("groups") or [])]
    if len(db) > 1:
        report.add("hosts", "FAIL", f"group db has {len(db)} servers ({', '.join(db)}); the shared database runs on one",
                   f"keep one server under all.children.db.hosts in {hosts_file}: site.yml starts the database "
                   "on the first one only, and the web hosts use that one")
    for host, c in conn.items():
        if is_documentation_address(c.get("address")):
            report.add("hosts", "FAIL", f"{host}: ansible_host is {c.get('address')}, an example address",
                       f"set ansible_host of {host} in {hosts_file} to your server's address or DNS name")
        else:
            reachable.append(host)
    if web and len(db) <= 1 and len(reachable) == len(conn):
        report.add("hosts", "PASS", f"{len(conn)} server(s): " + ", ".join(
            f"{h} ({c.get('user') or '?'}@{c.get('address')}:{c.get('port')})" for h, c in conn.items()))
    return reachable


def check_database_host(report: Report, hostvars: dict, conn: dict, inventory: Path) -> None:
    """With a shared database host (group db), the web hosts outside it must connect to it."""
    db = [h for h, c in conn.items() if "db" in (c.get("groups") or [])]
    web = [h for h, c in conn.items() if "web" in (c.get("groups") or []) and h not in db]
    if len(db) != 1 or not web:
        return
    wrong = []
    for host in web:
        values = hostvars.get(host, ({}, {}))[0]
        env = values.get("app_env") or {}
        if "DATABASE_URL" in env or "DATABASE_URL" in (values.get("app_env_secrets") or {}):
            continue
        target = str(env.get("POSTGRES_HOST") or "").strip()
        local = {"", "localhost", "127.0.0.1", "::1", str(values.get("app_db_service") or "db")}
        if target in local:
            wrong.append(f"{host}: {target or 'unset'}")
    if wrong:
        report.add("database", "FAIL",
                   f"the database runs on {db[0]} (group db), but the web hosts look for it on themselves "
                   f"(app_env.POSTGRES_HOST of {'; '.join(wrong)})",
                   f"set app_env.POSTGRES_HOST for the web hosts (e.g. in {rel(inventory)}/group_vars/web/main.yml) "
                   f"to the private address of {db[0]}; README, \"Several web hosts\"")
    else:
        report.add("database", "PASS", f"the web hosts ({', '.join(web)}) connect to the database host {db[0]}")


# --------------------------------------------------------------------------- SSH, OS, resources

def os_release(result: dict) -> dict:
    """KEY=value pairs of /etc/os-release from the probe's slurp result ({} when unread)."""
    try:
        text = base64.b64decode(result.get("content", "")).decode("utf-8", "replace")
    except (ValueError, TypeError):
        return {}
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            pairs[key.strip()] = value.strip().strip('"').strip("'")
    return pairs


def check_server(report: Report, host: str, c: dict, results: dict, values: dict, inventory: Path) -> dict:
    """SSH, become, OS, disk and memory of one host; returns its facts (or {})."""
    hosts_file = rel(inventory_paths(inventory)["hosts"])
    target = f"{c.get('user') or '(your login name)'}@{c.get('address')}:{c.get('port')}"
    ping = results.get("Reach the server", {})
    if not ping or ping.get("skipped"):
        report.add(f"ssh {host}", "SKIP", "not tried: the address is an example address")
        return {}
    if ping.get("unreachable") or ping.get("failed"):
        msg = str(ping.get("msg", "")).strip()
        short = msg.splitlines()[-1][:300] if msg else "no answer"
        if "Permission denied" in msg:
            fix = (f"make sure {c.get('user')} may log in with the key "
                   f"{c.get('key') or '(ssh-agent / ~/.ssh default)'}: put its .pub in "
                   f"~{c.get('user')}/.ssh/authorized_keys on the server, or set ansible_user / "
                   f"ansible_ssh_private_key_file in {hosts_file}")
        elif "Host key verification failed" in msg or "REMOTE HOST IDENTIFICATION HAS CHANGED" in msg:
            fix = (f"the server's host key is unknown or changed: check its fingerprint with your provider, "
                   f"then add it with ssh-keyscan -p {c.get('port')} {c.get('address')} >> ~/.ssh/known_hosts")
        elif "python" in msg.lower() and not ping.get("unreachable"):
            fix = "install python3 on the server (apt-get install python3)"
        else:
            fix = (f"check ansible_host / ansible_port of {host} in {hosts_file}, that the server runs and "
                   f"sshd listens on port {c.get('port')}, and that no firewall blocks it from here")
        report.add(f"ssh {host}", "FAIL", f"cannot log in as {target}: {short}", fix)
        for check in ("become", "os", "disk", "memory"):
            report.add(f"{check} {host}", "SKIP", "not checked: SSH failed")
        return {}
    report.add(f"ssh {host}", "PASS", f"logged in as {target}")

    become = results.get("Become root", {})
    if become.get("failed") or become.get("unreachable") or str(become.get("stdout", "")).strip() != "0":
        msg = str(become.get("module_stderr") or become.get("msg") or become.get("stderr") or "").strip()
        short = msg.splitlines()[-1][:300] if msg else "sudo did not give root"
        report.add(f"become {host}", "FAIL", f"sudo as {c.get('user')} failed: {short}",
                   f"give {c.get('user')} sudo without a password (a line '{c.get('user')} ALL=(ALL) NOPASSWD:ALL' "
                   f"in /etc/sudoers.d/), or put its password in the vault as ansible_become_password")
    else:
        report.add(f"become {host}", "PASS", f"sudo works for {c.get('user')}")

    setup = results.get("Facts", {})
    facts = setup.get("ansible_facts") or {}
    release = os_release(results.get("OS release", {}))
    if not release and not facts.get("ansible_distribution"):
        for check in ("os", "disk", "memory"):
            report.add(f"{check} {host}", "FAIL" if check == "os" else "SKIP",
                       f"neither facts nor /etc/os-release could be read: {str(setup.get('msg', ''))[:300]}",
                       "make sure python3 runs on the server" if check == "os" else "")
        return {}

    # /etc/os-release first (what the fact collectors read), the facts when it is missing.
    dist = release.get("NAME", "").split()[0] if release.get("ID") == "debian" else (
        release.get("NAME") or facts.get("ansible_distribution", "?"))
    version = release.get("VERSION_ID") or str(facts.get("ansible_distribution_version", "?"))
    major = version.split(".")[0]
    codename = release.get("VERSION_CODENAME") or facts.get("ansible_distribution_release", "")
    supported = [str(r) for r in values.get("preflight_supported_debian_releases") or DEFAULTS["preflight_supported_debian_releases"]]
    label = f"{dist} {version} ({codename})"
    if dist == "Debian" and major in supported:
        report.add(f"os {host}", "PASS", f"{label}, {facts.get('ansible_architecture', '')}")
    else:
        report.add(f"os {host}", "FAIL", f"{host} runs {label}; supported are Debian {' and '.join(supported)}",
                   f"install Debian {supported[-1]} on the server (the playbooks are tested on Debian "
                   f"{' and '.join(supported)}; preflight_supported_debian_releases lists them)")

    min_mem = int(values.get("shipshape_min_memory_mb") or DEFAULTS["shipshape_min_memory_mb"])
    total = int(facts.get("ansible_memtotal_mb") or 0)
    free = (facts.get("ansible_memory_mb") or {}).get("nocache", {}).get("free")
    mem_detail = f"{total} MB total" + (f", {free} MB available" if free is not None else "")
    if total >= min_mem:
        report.add(f"memory {host}", "PASS", f"{mem_detail} (minimum {min_mem} MB)")
    else:
        report.add(f"memory {host}", "FAIL", f"{mem_detail}: below the minimum of {min_mem} MB",
                   "take a server with more memory (Docker, the app and PostgreSQL need about 1 GB), "
                   "or lower shipshape_min_memory_mb if you know it fits")

    min_disk = int(values.get("shipshape_min_disk_free_mb") or DEFAULTS["shipshape_min_disk_free_mb"])
    df = results.get("Free disk space where Docker keeps its data", {})
    fields = str(df.get("stdout", "")).split()
    if df.get("failed") or len(fields) < 6 or not fields[3].isdigit():
        report.add(f"disk {host}", "WARN", "could not read the free space of /var/lib/docker's file system",
                   "check by hand: df -h /var/lib/docker /")
    else:
        avail = int(fields[3]) // 1024
        detail = (f"{avail} MB free for /var/lib/docker (file system mounted at {fields[5]}; "
                  f"minimum {min_disk} MB)")
        if avail >= min_disk:
            report.add(f"disk {host}", "PASS", detail)
        else:
            report.add(f"disk {host}", "FAIL", detail,
                       "free space (images, logs, old releases) or grow the disk; "
                       "shipshape_min_disk_free_mb sets the minimum")
    return facts


def check_login_key(report: Report, host: str, c: dict, values: dict, inventory: Path) -> None:
    """WARN when the key Ansible logs in with is not among the deploy user's authorized keys."""
    deploy = values.get("hardening_deploy_user") or values.get("shipshape_deploy_user") or "deploy"
    keys = values.get("hardening_deploy_authorized_keys")
    key_file = c.get("key")
    if c.get("user") != deploy or not isinstance(keys, list) or not key_file:
        return
    pub = Path(str(key_file) + ".pub")
    if not pub.exists():
        return
    mine = pub.read_text().split()[:2]
    listed = [str(k).split()[:2] for k in keys if isinstance(k, str)]
    if mine not in listed:
        report.add(f"login key {host}", "WARN",
                   f"the key Ansible logs in with ({pub}) is not in hardening_deploy_authorized_keys",
                   f"add the contents of {pub} to hardening_deploy_authorized_keys in "
                   f"{rel(inventory_paths(inventory)['main'])}, or the next run after hardening cannot log in")


# --------------------------------------------------------------------------- DNS and ports

def resolve(name: str, timeout: float = 10.0) -> tuple:
    """(set of addresses, error) for a name, with a time limit."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(socket.getaddrinfo, name, None, 0, socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            return set(), f"no answer from the resolver in {timeout:.0f} s"
        except socket.gaierror as exc:
            return set(), exc.strerror or str(exc)
    return {info[4][0] for info in infos}, ""


def global_addresses(facts: dict) -> set:
    found = set()
    for key in ("ansible_all_ipv4_addresses", "ansible_all_ipv6_addresses"):
        for addr in facts.get(key) or []:
            try:
                ip = ipaddress.ip_address(addr.split("%")[0])
            except ValueError:
                continue
            if not (ip.is_loopback or ip.is_link_local):
                found.add(str(ip))
    return found


def check_dns(report: Report, hostvars: dict, conn: dict, facts_of: dict, inventory: Path) -> dict:
    """Returns {public address: ports} to probe."""
    main = rel(inventory_paths(inventory)["main"])
    web = [h for h, c in conn.items() if "web" in (c.get("groups") or [])] or list(conn)
    probes = {}
    for host in web:
        values = hostvars.get(host, ({}, {}))[0]
        c = conn[host]
        public = str(values.get("shipshape_public_address") or "")
        if public:
            expected, _ = resolve(public)
            expected = expected or {public}
            source = "from shipshape_public_address" + ("" if public in expected else f" {public}")
        else:
            expected, err = resolve(str(c.get("address")))
            source = "from ansible_host" + ("" if str(c.get("address")) in expected else f" {c.get('address')}")
            if not expected:
                report.add(f"dns {host}", "FAIL", f"{host}: ansible_host {c.get('address')} does not resolve: {err}",
                           f"set ansible_host of {host} to the server's address or a name that resolves")
                continue
        expected_all = expected | global_addresses(facts_of.get(host, {}))
        overrides = values.get("shipshape_dns_overrides") or {}
        domains = values.get("tls_domains") if isinstance(values.get("tls_domains"), list) else []
        for entry in domains:
            if not isinstance(entry, dict):
                continue
            for name in [entry.get("name")] + list(entry.get("aliases") or []):
                if not isinstance(name, str) or not name:
                    continue
                if name in overrides:
                    addrs, how = {str(overrides[name])}, "by shipshape_dns_overrides (not DNS)"
                else:
                    addrs, err = resolve(name)
                    how = "by the resolver (DNS, /etc/hosts)"
                    if not addrs:
                        report.add(f"dns {name}", "FAIL", f"{name} does not resolve ({err})",
                                   f"create a DNS A record (and AAAA for IPv6) {name} -> {sorted(expected)[0]} "
                                   f"and wait for it to appear; Let's Encrypt and your users need it")
                        continue
                shown = ", ".join(sorted(addrs))
                if not addrs & expected_all:
                    report.add(f"dns {name}", "FAIL",
                               f"{name} resolves to {shown} {how}, but the server is {', '.join(sorted(expected))} ({source})",
                               f"point {name}'s A/AAAA records at {sorted(expected)[0]} (or set shipshape_public_address "
                               f"in {main} when the server is reached through another address)")
                elif addrs - expected_all:
                    report.add(f"dns {name}", "WARN",
                               f"{name} resolves to {shown} {how}; {', '.join(sorted(addrs - expected_all))} is not the server",
                               f"remove the records of {name} that point elsewhere (clients and Let's Encrypt may "
                               f"pick them)")
                elif how.startswith("by shipshape"):
                    report.add(f"dns {name}", "WARN",
                               f"{name} -> {shown} is taken from shipshape_dns_overrides, not from DNS "
                               f"(the server is {', '.join(sorted(expected))}, {source})",
                               "only right for a test domain; for a public one remove it from shipshape_dns_overrides "
                               "and create the DNS record")
                else:
                    report.add(f"dns {name}", "PASS", f"{name} resolves to {shown}, the server's address ({source})")
        addr = sorted(expected)[0]
        ports = (values.get("shipshape_public_http_port") or DEFAULTS["shipshape_public_http_port"],
                 values.get("shipshape_public_https_port") or DEFAULTS["shipshape_public_https_port"])
        probes[addr] = tuple(int(p) for p in ports)
    return probes


def check_ports(report: Report, probes: dict, timeout: float) -> None:
    def probe(addr, port):
        try:
            with socket.create_connection((addr, port), timeout=timeout):
                return "open", ""
        except ConnectionRefusedError:
            return "refused", ""
        except (socket.timeout, TimeoutError):
            return "timeout", ""
        except OSError as exc:
            return "error", exc.strerror or str(exc)

    jobs = [(addr, port, kind) for addr, ports in probes.items() for port, kind in zip(ports, ("HTTP", "HTTPS"))]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        outcomes = list(pool.map(lambda j: probe(j[0], j[1]), jobs))
    for (addr, port, kind), (state, err) in zip(jobs, outcomes):
        where = f"{addr}:{port}"
        if state == "open":
            report.add(f"port {port}", "PASS", f"{kind} port {where} accepts connections from here")
        elif state == "refused":
            report.add(f"port {port}", "WARN", f"{where} refused the connection: nothing listens yet "
                       f"(normal before the first deploy; nothing drops it on the way)",
                       "after site.yml nginx listens there; if it still refuses, check the server's firewall")
        else:
            report.add(f"port {port}", "WARN", f"{where} did not answer from here in {timeout:.0f} s"
                       + (f" ({err})" if err else ""),
                       f"open TCP {port} to the world in your provider's firewall"
                       + (" - Let's Encrypt validates over port 80" if kind == "HTTP" else ""))


# --------------------------------------------------------------------------- repository and compose

def git(*args, env=None, cwd=None, timeout=60, input_text=None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false", LC_ALL="C")
    full_env.update(env or {})
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, env=full_env, cwd=cwd,
                              timeout=timeout, check=False, input=input_text)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(["git", *args], 124, "", f"no answer in {timeout} s")


def git_dir(repo: str) -> str:
    """The Git directory of a bare repository or of a work tree."""
    return str(Path(repo) / ".git") if (Path(repo) / ".git").exists() else repo


def match_version(ls_remote: str, version: str) -> str | None:
    refs = {}
    for line in ls_remote.splitlines():
        if "\t" in line:
            sha, ref = line.split("\t", 1)
            refs[ref] = sha
    for ref in (f"refs/heads/{version}", f"refs/tags/{version}", version):
        if ref in refs:
            return refs.get(ref + "^{}", refs[ref])
    if re.fullmatch(r"[0-9a-f]{7,40}", version):
        for sha in refs.values():
            if sha.startswith(version):
                return sha
    return None


def check_repository(report: Report, values: dict, results: dict, host: str, workdir: Path,
                     inventory: Path, prepare_cmd: str):
    """Returns (a local Git directory holding the version, the ref to read) or (None, None)."""
    main = rel(inventory_paths(inventory)["main"])
    url = values.get("app_repo_url")
    version = str(values.get("app_version") or "")
    if not isinstance(url, str) or not url or is_placeholder(url) or not REPO_URL.match(url) or not version:
        report.add("repository", "SKIP", "not checked: app_repo_url or app_version is not usable")
        return None, None
    if url.startswith("file://"):
        path = url[len("file://"):]
        result = results.get("Read the app repository on the server")
        if result is None or result.get("skipped"):
            report.add("repository", "SKIP", f"{url} is on the server, which could not be reached")
            return None, None
        if result.get("failed") or result.get("unreachable"):
            err = str(result.get("stderr") or result.get("msg") or "").strip().splitlines()
            report.add("repository", "FAIL", f"{url}: {err[-1] if err else 'cannot be read'} on {host}",
                       f"put the repository at {path} on the server, or set app_repo_url "
                       f"in {main} (e.g. with {prepare_cmd} --repo URL)")
            return None, None
        local = workdir / "repo"
        local.mkdir()
        try:
            with tarfile.open(fileobj=io.BytesIO(base64.b64decode(result.get("stdout", ""))), mode="r:") as tar:
                tar.extractall(local, filter="data")
        except (tarfile.TarError, ValueError) as exc:
            report.add("repository", "WARN", f"could not copy {url} from {host} for the check: {exc}",
                       f"check by hand on the server: git ls-remote {path}")
            return None, None
        listing = git("ls-remote", str(local))
        where, env = f"on {host}", None
        source = str(local)
    else:
        env = {}
        key = values.get("app_deploy_key") or ""
        if key and not url.startswith(("http://", "https://")):
            key_file = workdir / "deploy_key"
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(key.rstrip("\n") + "\n")
            known = workdir / "known_hosts"
            known.write_text("\n".join(values.get("app_known_hosts") or []) + "\n")
            env["GIT_SSH_COMMAND"] = (f"ssh -i {key_file} -o IdentitiesOnly=yes -o BatchMode=yes "
                                      f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
                                      f"-o ConnectTimeout=10")
        else:
            env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes -o ConnectTimeout=10"
        listing = git("ls-remote", url, env=env, timeout=60)
        where, source = "from here" + (" with the deploy key" if key else ""), url
    if listing.returncode != 0:
        err = listing.stderr.strip().splitlines()
        short = err[-1][:300] if err else f"exit {listing.returncode}"
        fix = f"check app_repo_url in {main} (e.g. set it with {prepare_cmd} --repo URL)"
        if "Host key verification failed" in listing.stderr:
            fix = ("pin the Git server's host key: app_known_hosts (checked against the fingerprint "
                   "your Git host publishes), or ~/.ssh/known_hosts here when there is no deploy key")
        elif "Permission denied" in listing.stderr or "could not read Username" in listing.stderr:
            fix = ("the repository needs credentials: use an SSH URL with a deploy key "
                   "(app_deploy_key in the vault, app_known_hosts pinned)")
        report.add("repository", "FAIL", f"git ls-remote {url} failed {where}: {short}", fix)
        return None, None
    sha = match_version(listing.stdout, version)
    if sha is None:
        if re.fullmatch(r"[0-9a-f]{7,40}", version):
            report.add("repository", "WARN", f"{url} answers {where}; {version} is not a branch or tag tip, "
                       f"so it cannot be checked without fetching (the deploy checks it)",
                       "deploy a tag or branch, or make sure the commit is pushed")
            return None, None
        heads = [line.split("\t")[1] for line in listing.stdout.splitlines() if "\t" in line][:8]
        report.add("repository", "FAIL", f"{url} answers {where}, but has no branch or tag {version} "
                   f"(it has: {', '.join(heads) or 'no refs'})",
                   f"set app_version in {main} to a branch, tag or commit that exists (or push it)")
        return None, None
    report.add("repository", "PASS", f"{url} has {version} ({sha[:12]}), listed {where}")
    if not url.startswith(("file://", "http://", "https://")) and not values.get("app_deploy_key"):
        report.add("repository", "WARN", f"{url} is fetched over SSH but app_deploy_key is empty: "
                   f"the server fetches with whatever key its deploy user has (this check used yours)",
                   "give the server a read-only deploy key: app_deploy_key from the vault, "
                   "app_known_hosts pinned")
    if url.startswith("file://"):
        return source, sha
    fetched = workdir / "fetched"
    init = git("init", "-q", "--bare", str(fetched))
    fetch = git("-C", str(fetched), "fetch", "-q", "--depth", "1", url, version, env=env, timeout=180) \
        if init.returncode == 0 else init
    if init.returncode == 0 and fetch.returncode != 0:  # servers without shallow fetches (dumb HTTP)
        fetch = git("-C", str(fetched), "fetch", "-q", url, version, env=env, timeout=300)
    if fetch.returncode != 0:
        report.add("compose", "WARN", f"could not fetch {version} of {url} to read its compose files: "
                   f"{(fetch.stderr.strip().splitlines() or ['?'])[-1][:200]}",
                   "check the compose files by hand: docker compose config")
        return None, None
    return str(fetched), "FETCH_HEAD"


def interpolation_names(text: str) -> set:
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?\?)", text))


def manifest_filters():
    """The app role's filters of the manifest (the same schema, the same messages)."""
    path = Path(__file__).resolve().parent.parent / "roles/app/filter_plugins/app_manifest.py"
    spec = importlib.util.spec_from_file_location("app_manifest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_manifest(text: str) -> dict:
    """The app's shipshape.yml read by the app role's own filter: {"manifest": {...}, "errors": [...]}."""
    return manifest_filters().app_manifest(text)


def check_manifest(report: Report, repo: str, ref: str, values: dict, inventory: Path) -> dict:
    """The manifest row; returns the manifest (empty when the app has none or it is broken)."""
    main = rel(inventory_paths(inventory)["main"])
    version = values.get("app_version")
    shown = git("--git-dir", git_dir(repo), "show", f"{ref}:shipshape.yml")
    if shown.returncode != 0:
        report.add("manifest", "PASS", f"the app has no shipshape.yml at {version}: the roles' defaults and {main} say how it runs")
        return {}
    read = read_manifest(shown.stdout)
    for error in read["errors"]:
        report.add("manifest", "FAIL", f"{error} (at {version})",
                   f"fix shipshape.yml in the app repository (schema: roles/app/files/shipshape.schema.json), "
                   f"or set the app_* variable of that key in {main}")
    if read["errors"]:
        return {}
    report.add("manifest", "PASS", f"shipshape.yml at {version} keeps the app contract")
    artifacts = values.get("app_artifacts", read["manifest"].get("artifacts", []))
    if artifacts or values.get("app_artifact_urls"):
        planned = manifest_filters().app_artifacts(artifacts, values.get("app_artifact_urls", {}))
        for error in planned["errors"]:
            report.add("artifacts", "FAIL", f"{error} (at {version})",
                       f"give each artifact of shipshape.yml its URL in app_artifact_urls in {main}")
        if not planned["errors"]:
            report.add("artifacts", "PASS", f"{len(planned['artifacts'])} artifact(s), each with a URL and a sha256")
    return read["manifest"]


def check_compose(report: Report, repo: str | None, ref: str | None, values: dict, workdir: Path,
                  inventory: Path) -> None:
    main = rel(inventory_paths(inventory)["main"])
    if repo is None:
        if not any(r.check == "compose" for r in report.rows):
            report.add("manifest", "SKIP", "not checked: the repository at the version could not be read")
            report.add("compose", "SKIP", "not checked: the repository at the version could not be read")
            report.add("env keys", "SKIP", "not checked: the repository at the version could not be read")
        return
    version = values.get("app_version")
    # The inventory wins over the app's manifest, which wins over the roles' defaults.
    manifest = check_manifest(report, repo, ref, values, inventory)
    app_files = (values.get("app_compose_files") or manifest.get("compose_files")
                 or DEFAULTS["app_compose_files"])
    data_files = values.get("app_stateful_files")
    if data_files is None:
        # An app with a manifest that names no stateful files has none; one without a manifest gets the default.
        data_files = (manifest.get("stateful") or {}).get(
            "files", [] if "contract" in manifest else DEFAULTS["app_stateful_files"])
    web = (values.get("app_web_service") or (manifest.get("web") or {}).get("service")
           or DEFAULTS["app_web_service"])
    db = values.get("app_db_service") or DEFAULTS["app_db_service"]
    texts, problems = {}, []
    for name in [*app_files, *data_files]:
        shown = git("--git-dir", git_dir(repo), "show", f"{ref}:{name}")
        if shown.returncode != 0:
            problems.append((f"{name} is not in the repository at {version}",
                             f"set app_compose_files / app_stateful_files in {main} to the app's compose files"))
        else:
            texts[name] = shown.stdout
    compose_v2 = shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    services = {}
    for name, text in texts.items():
        try:
            doc = load_yaml_text(text, name)
        except ValueError as exc:
            problems.append((f"{exc}", f"fix {name} in the app repository"))
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict) or not doc["services"]:
            problems.append((f"{name} has no services", f"fix {name} in the app repository"))
            continue
        for svc, spec in doc["services"].items():
            if not isinstance(spec, dict) or not (spec.get("image") or spec.get("build")):
                problems.append((f"{name}: service {svc} has neither image nor build", f"fix {name}"))
            services.setdefault(name, set()).add(svc)
    if texts and not problems:
        in_app = set().union(*(services.get(f, set()) for f in app_files))
        in_data = set().union(*(services.get(f, set()) for f in data_files)) if data_files else set()
        if web not in in_app:
            problems.append((f"the web service '{web}' is not in {', '.join(app_files)}",
                             f"set app_web_service in {main} to the service that serves HTTP"))
        if data_files and db not in in_data:
            problems.append((f"the database service '{db}' is not in {', '.join(data_files)}",
                             f"set app_db_service in {main}"))
    if not problems and compose_v2:
        project = workdir / "compose"
        project.mkdir()
        (project / ".env").write_text("")  # the files' env_file; its values do not matter here
        for name, text in texts.items():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            (project / name).write_text(text)
        env = dict(os.environ)
        for key, value in (values.get("app_compose_variables") or {}).items():
            env[str(key)] = str(value)
        for files in (app_files, data_files):
            if not files:
                continue
            args = ["docker", "compose", "--project-directory", str(project)]
            for f in files:
                args += ["-f", str(project / f)]
            proc = subprocess.run([*args, "config", "--quiet"], capture_output=True, text=True,
                                  env=env, check=False, timeout=60)
            if proc.returncode != 0:
                problems.append((f"docker compose config of {', '.join(files)}: "
                                 f"{(proc.stderr.strip().splitlines() or ['invalid'])[-1][:300]}",
                                 "fix the compose file in the app repository (or app_compose_variables)"))
    for detail, fix in problems:
        report.add("compose", "FAIL", detail, fix)
    if not problems:
        names = ", ".join([*app_files, *data_files])
        if compose_v2:
            report.add("compose", "PASS", f"{names} at {version}: docker compose config passes")
        else:
            report.add("compose", "WARN", f"{names} at {version} parse, have services, the web service "
                       f"'{web}' and the database '{db}'; docker compose config was not run",
                       "install Docker Compose v2 here for the full check (docker compose config)")

    example = values.get("app_env_example") or DEFAULTS["app_env_example"]
    shown = git("--git-dir", git_dir(repo), "show", f"{ref}:{example}")
    if shown.returncode != 0:
        report.add("env keys", "FAIL", f"{example} is not in the repository at {version}",
                   "the app must ship it (every key it needs), or set app_env_example")
        return
    keys = set(re.findall(r"(?m)^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", shown.stdout))
    configured = set((values.get("app_env") or {}).keys()) | set((values.get("app_env_secrets") or {}).keys())
    missing = sorted(keys - configured)
    if missing:
        report.add("env keys", "FAIL", f"{example} names keys that are not configured: {', '.join(missing)}",
                   f"add them to app_env (plain values) or app_env_secrets (from the vault) in {main}")
    else:
        report.add("env keys", "PASS", f"all {len(keys)} keys of {example} are configured")


# --------------------------------------------------------------------------- syntax check

def syntax_check(inventory: Path, password_file: Path | None) -> tuple:
    cmd = [ansible_tool("ansible-playbook"), str(REPO_ROOT / "site.yml"), "-i", str(inventory), "--syntax-check"]
    if password_file is not None:
        cmd += ["--vault-password-file", str(password_file)]
    env = tool_env()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        return False, "did not finish in 300 s"
    lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    return proc.returncode == 0, (lines[-1][:400] if lines else "")


# --------------------------------------------------------------------------- output

def print_table(rows: list, out=sys.stdout) -> None:
    width = shutil.get_terminal_size((160, 40)).columns
    width = max(100, min(width, 200))
    w_check = min(max(len(r.check) for r in rows), 34)
    w_status = 6
    rest = width - w_check - w_status - 6
    w_detail = max(30, rest * 3 // 5)
    w_fix = max(20, rest - w_detail)
    header = ("CHECK", "STATUS", "DETAIL", "FIX")

    def cells(values):
        cols = [textwrap.wrap(v, w) or [""] for v, w in zip(values, (w_check, w_status, w_detail, w_fix))]
        for i in range(max(len(c) for c in cols)):
            parts = [(c[i] if i < len(c) else "").ljust(w) for c, w in zip(cols, (w_check, w_status, w_detail, w_fix))]
            out.write("  ".join(parts).rstrip() + "\n")

    cells(header)
    out.write("  ".join("-" * w for w in (w_check, w_status, w_detail, w_fix)) + "\n")
    for r in rows:
        cells((r.check, r.status, r.detail, r.fix))


# --------------------------------------------------------------------------- main

def parse_args(argv):
    parser = argparse.ArgumentParser(prog="validate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--inventory", required=True, type=Path,
                        help="inventory directory, e.g. inventories/prod")
    parser.add_argument("--vault-password-file", help="file with the vault password (default: "
                        "ANSIBLE_VAULT_PASSWORD_FILE, else ~/.config/shipshape/ENV.vault-pass)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--timeout", type=int, default=10,
                        help="seconds to wait for SSH, DNS and port answers (default 10)")
    return parser.parse_args(argv)


def validate(args) -> Report:
    report = Report()
    inventory = args.inventory.resolve()
    env = inventory.name
    try:
        shown_inv = str(inventory.relative_to(REPO_ROOT))
    except ValueError:
        shown_inv = str(inventory)
    prepare_cmd = (f"scripts/prepare.py {env}"
                   + ("" if shown_inv == f"inventories/{env}" else f" --inventory {shown_inv}"))
    if not inventory.is_dir():
        report.add("inventory", "FAIL", f"{args.inventory} is not a directory",
                   "create it with scripts/prepare.py ENV --domain DOMAIN --repo URL (inventories/ENV)")
        return report
    password_file, pw_source = vault_password_file(args.vault_password_file, env)
    if args.vault_password_file:
        prepare_cmd += f" --vault-password-file {args.vault_password_file}"

    parses = check_yaml(report, inventory)
    vault_data, loadable = check_vault(report, inventory, password_file, pw_source, env, prepare_cmd)
    check_secrets(report, vault_data, prepare_cmd, inventory_paths(inventory)["vault"])
    pw_arg = password_file if password_file.exists() else None

    later = ("variables", "hosts", "ssh", "become", "os", "disk", "memory", "dns", "ports",
             "repository", "compose", "env keys", "syntax-check")
    if not parses or not loadable:
        why = "the inventory does not parse" if not parses else "the vault cannot be decrypted"
        for check in later:
            report.add(check, "SKIP", f"not checked: {why}")
        return report

    with tempfile.TemporaryDirectory(prefix="shipshape-validate-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o700)
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            syntax_future = pool.submit(syntax_check, inventory, pw_arg)
            probe_dir = workdir / "probe"
            probe_dir.mkdir()
            probe, probe_err = run_probe(inventory, pw_arg, args.timeout, probe_dir)
            syntax_ok, syntax_msg = syntax_future.result()

        if probe is None:
            report.add("inventory", "FAIL", f"Ansible cannot load the inventory: {probe_err}",
                       f"fix the file named above (ansible-inventory -i {shown_inv} --list shows the same)")
            for check in later[1:-1]:
                report.add(check, "SKIP", "not checked: Ansible cannot load the inventory")
        else:
            per_host = probe_results(probe)
            conn = {h: r.get("Connection settings", {}).get("msg") or {} for h, r in per_host.items()}
            hostvars = {h: settings_of(r) for h, r in per_host.items()}
            check_variables(report, hostvars, inventory, prepare_cmd,
                            {v for v in (vault_data or {}).values() if isinstance(v, str)})
            ssh_hosts = check_hosts(report, conn, inventory)
            check_database_host(report, hostvars, conn, inventory)
            facts_of = {}
            for host in conn:
                if host in ssh_hosts:
                    facts_of[host] = check_server(report, host, conn[host], per_host[host],
                                                  hostvars[host][0], inventory)
                    check_login_key(report, host, conn[host], hostvars[host][0], inventory)
                else:
                    for check in ("ssh", "become", "os", "disk", "memory"):
                        report.add(f"{check} {host}", "SKIP", "not checked: the host has an example address")
            probes = check_dns(report, hostvars, {h: conn[h] for h in ssh_hosts}, facts_of, inventory)
            if not any(r.check.startswith("dns") for r in report.rows):
                report.add("dns", "SKIP", "not checked: no server with a usable address, or no domain")
            if probes:
                check_ports(report, probes, float(min(args.timeout, 5)))
            else:
                report.add("ports", "SKIP", "not checked: no server with a usable address")
            web = [h for h in conn if "web" in (conn[h].get("groups") or [])] or list(conn)
            if web:
                first = web[0]
                repo, ref = check_repository(report, hostvars[first][0], per_host[first], first, workdir,
                                             inventory, prepare_cmd)
                check_compose(report, repo, ref, hostvars[first][0], workdir, inventory)
        if syntax_ok:
            report.add("syntax-check", "PASS", "ansible-playbook site.yml --syntax-check passes")
        else:
            report.add("syntax-check", "FAIL", f"ansible-playbook site.yml --syntax-check: {syntax_msg}",
                       "fix the file named above")
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = validate(args)
    except VaultError as exc:  # a missing toolchain
        print(f"[shipshape] ERROR: {exc}", file=sys.stderr)
        return 2
    rows = report.masked()
    counts = {s: sum(1 for r in rows if r.status == s) for s in STATUSES}
    if args.json:
        print(json.dumps({"inventory": str(args.inventory), "ok": not report.failed,
                          "counts": counts, "checks": [asdict(r) for r in rows]}, indent=2))
    else:
        print_table(rows)
        print()
        verdict = "FAILED" if report.failed else "passed"
        print(f"[shipshape] validate {verdict}: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES)
              + ("" if report.failed else " - nothing failed; WARN rows are worth a look"))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
