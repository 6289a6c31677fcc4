#!/usr/bin/env python3
"""Prepare an environment's inventory: strong secrets in an encrypted vault, and the settings.

  prepare.py ENV --domain DOMAIN --repo URL [--email EMAIL] [--version REF]
  prepare.py ENV --rotate NAME        (once the inventory has its domain and repository)

writes inventories/ENV/:
  hosts.yml                   a skeleton when there is none (edit: your server's address and user)
  group_vars/all/main.yml     the settings; --domain, --repo, --email, --version, --app-name
                              set their variables there (the rest of the file is left alone)
  group_vars/all/vault.yml    the secrets, encrypted with ansible-vault: Django's SECRET_KEY,
                              the database, admin and restic passwords (vault_* variables)

The vault password is read from --vault-password-file, else ANSIBLE_VAULT_PASSWORD_FILE,
else ~/.config/shipshape/ENV.vault-pass; when that file does not exist and there is no vault
yet, a random password is written there (mode 0600, directory 0700). Keep it safe: without
it the vault cannot be opened. A password file inside a Git work tree must be git-ignored.

An existing secret is never replaced, except a placeholder (CHANGE_ME, empty) or one named
with --rotate NAME. Running it again with the same arguments changes nothing. Secret values
are never printed. It ends by listing what is left to edit by hand, then validate with:

  scripts/validate.py -i inventories/ENV
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inventory_common import (  # noqa: E402
    DOMAIN, EMAIL, ENV_NAME, REPO_ROOT, REPO_URL, SECRET_NAMES, SECRETS, VaultError, dump_value,
    generate, git_tracks_risk, inventory_paths, is_documentation_address, is_placeholder,
    is_vault_encrypted, load_yaml_text, secret_by_name, vault_decrypt, vault_encrypt,
    vault_password_file, weakness,
)

VAULT_HEADER = """\
---
# Secrets of the {env} environment, encrypted with ansible-vault. Written by
# scripts/prepare.py; see vault.yml.example for what each one is. Edit with
#   ansible-vault edit {path} --vault-password-file PASSWORD_FILE
# main.yml maps these vault_* variables to the roles' variables.
"""

MAIN_TEMPLATE = """\
---
# Settings of the {env} environment. Secrets are not here: they live in vault.yml next to
# this file (ansible-vault encrypted, variables named vault_*; see vault.yml.example), and
# this file maps them to the roles' variables. scripts/prepare.py writes the vault and sets
# the values marked "(prepare.py)"; scripts/validate.py checks everything before a deploy:
#   scripts/prepare.py {env} --domain app.example.com --repo https://git.example.com/you/app.git --email you@example.com
#   scripts/validate.py -i inventories/{env}
shipshape_environment: {env}
# Name of the deployment: paths (/srv/NAME), the Compose project, unit names.
shipshape_app_name: app
# The public name of the app; its DNS record must point at the server (prepare.py --domain).
shipshape_domain: ""

# Public keys that may log in as the deploy user once the server is hardened (the contents
# of ~/.ssh/id_ed25519.pub). Include the key you deploy with, or the next run cannot log in.
hardening_deploy_authorized_keys: []

# The app: its Git repository (prepare.py --repo) and the branch, tag or commit to deploy.
app_repo_url: ""
app_version: main
# A private repository over SSH also needs a deploy key (in the vault) and the Git server's
# pinned host key (see roles/app/README.md):
# app_deploy_key: "{{{{ vault_app_deploy_key }}}}"
# app_known_hosts: ["git.example.com ssh-ed25519 AAAA..."]
# How the app runs (its preset - the example's is django: its migrations, and the admin user
# named by DJANGO_SUPERUSER_* below -, its hooks, the services that must never run twice, its
# compose files) is in the app's own shipshape.yml. An app_* variable set here wins over it,
# e.g. app_once_services: [worker, scheduler].
# Django's admin login page: checked after each deploy, and the target of the rate-limit burst.
verify_admin_path: /admin/login/

# The app's environment: every key of its .env.example. These are the example app's keys
# (examples/django-app/.env.example); the secret ones come from the vault.
app_env:
  ALLOWED_HOSTS: "{{{{ shipshape_domain }}}}"
  CSRF_TRUSTED_ORIGINS: "https://{{{{ shipshape_domain }}}}"
  POSTGRES_HOST: db
  POSTGRES_USER: "{{{{ shipshape_app_name }}}}"
  POSTGRES_DB: "{{{{ shipshape_app_name }}}}"
  DJANGO_SUPERUSER_USERNAME: admin
  DJANGO_SUPERUSER_EMAIL: "admin@{{{{ shipshape_domain }}}}"
app_env_secrets:
  SECRET_KEY: "{{{{ vault_django_secret_key }}}}"
  POSTGRES_PASSWORD: "{{{{ vault_postgres_password }}}}"
  DJANGO_SUPERUSER_PASSWORD: "{{{{ vault_superuser_password }}}}"

# Backups: the password of the restic repository (from the vault) and where it is.
backups_restic_password: "{{{{ vault_restic_password }}}}"
# Where restic keeps the off-site copies: another machine, never this server
# (sftp:backup@backup.example.com:/srv/restic/app, s3:s3.example.com/bucket/app,
# rest:https://backup.example.com/app/). Give an sftp target's SSH key to root on the server.
backups_restic_repository: ""

# HTTPS for the domain, with a certificate from Let's Encrypt ("staging" while trying out).
tls_domains:
  - name: "{{{{ shipshape_domain }}}}"
tls_acme_server: {acme_server}
# Contact for certificate expiry notices (prepare.py --email).
tls_acme_email: ""

# The pre-flight play refuses to deploy while one of these is unset or a placeholder.
preflight_no_placeholder_vars:
{placeholder_vars}
"""

HOSTS_TEMPLATE = """\
---
# The {env} servers. Replace the documentation address (203.0.113.0/24 is reserved for
# examples) with your server's address or DNS name, and the user with the sudo user your
# provider gave you. scripts/validate.py checks this file before any change.
all:
  children:
    web:
      hosts:
        {env}-web-1:
          ansible_host: 203.0.113.10
          ansible_user: deploy
"""

# Settings the mapping in main.yml must provide, with the block appended when one is absent.
MAPPINGS = {
    "app_env_secrets": (
        "# The app's secret environment, from the vault.\n"
        "app_env_secrets:\n"
        '  SECRET_KEY: "{{ vault_django_secret_key }}"\n'
        '  POSTGRES_PASSWORD: "{{ vault_postgres_password }}"\n'
        '  DJANGO_SUPERUSER_PASSWORD: "{{ vault_superuser_password }}"\n'),
    "backups_restic_password": (
        "# The password of the restic backup repository, from the vault.\n"
        'backups_restic_password: "{{ vault_restic_password }}"\n'),
}


def main_template(env: str) -> str:
    return MAIN_TEMPLATE.format(
        env=env,
        acme_server="staging" if env == "staging" else "production",
        placeholder_vars="\n".join(f"  - {name}" for name in SECRET_NAMES))


def say(msg: str = "") -> None:
    print(f"[shipshape] {msg}" if msg else "", flush=True)


class PrepareError(RuntimeError):
    """A problem with a message for the person running the script."""


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- main.yml

def top_level_line(lines: list, key: str) -> int | None:
    pattern = re.compile(rf"^{re.escape(key)}\s*:(\s|$)")
    return next((i for i, line in enumerate(lines) if pattern.match(line)), None)


def set_scalar(text: str, key: str, value, path: Path) -> tuple:
    """Set a top-level one-line setting in YAML text, keeping everything else as it is.
    Returns (new text, what happened)."""
    data = load_yaml_text(text, rel(path)) or {}
    if not isinstance(data, dict):
        raise PrepareError(f"{rel(path)} is not a mapping of settings; fix it or move it aside")
    if key in data and data[key] == value:
        return text, None
    lines = text.splitlines(keepends=True)
    index = top_level_line(lines, key)
    new_line = f"{key}: {dump_value(value)}\n"
    if index is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(new_line)
        action = "added"
    else:
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if lines[index].split(":", 1)[1].strip() in ("", "|", ">", "|-", ">-") and following[:1] in (" ", "-"):
            raise PrepareError(
                f"{key} in {rel(path)} spans several lines; set it by hand to {dump_value(value)}")
        lines[index] = new_line
        action = "set"
    new_text = "".join(lines)
    check = load_yaml_text(new_text, rel(path))
    if check.get(key) != value:
        raise PrepareError(f"could not set {key} in {rel(path)}; set it by hand to {dump_value(value)}")
    return new_text, action


def prepare_main(path: Path, env: str, settings: dict, report: list) -> dict:
    created = not path.exists()
    text = main_template(env) if created else path.read_text()
    changes = []
    for key, value in settings.items():
        text, action = set_scalar(text, key, value, path)
        if action:
            changes.append(key)
    data = load_yaml_text(text, rel(path)) or {}
    for key, block in MAPPINGS.items():
        if key not in data:
            text = text.rstrip("\n") + "\n\n" + block
            changes.append(key)
    data = load_yaml_text(text, rel(path)) or {}
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
        report.append(f"created {rel(path)}")
    elif changes:
        write_text(path, text, mode=path.stat().st_mode & 0o777)
        report.append(f"updated {rel(path)}: {', '.join(changes)}")
    else:
        report.append(f"unchanged {rel(path)}")
    return data


def prepare_hosts(path: Path, env: str, report: list) -> dict:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, HOSTS_TEMPLATE.format(env=env))
        report.append(f"created {rel(path)} (a skeleton)")
    else:
        report.append(f"unchanged {rel(path)}")
    return load_yaml_text(path.read_text(), rel(path)) or {}


# --------------------------------------------------------------------------- vault

def ensure_password_file(path: Path, source: str, vault_encrypted: bool, report: list) -> None:
    if path.exists():
        if not path.is_file():
            raise PrepareError(f"the vault password file {path} is not a file")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077 and not os.access(path, os.X_OK):
            report.append(f"WARNING: {path} is readable by others (mode {mode:04o}); "
                          f"fix: chmod 600 {path}")
        return
    if vault_encrypted:
        raise PrepareError(
            f"the vault is encrypted but its password file {path} ({source}) does not exist; "
            f"pass the file that holds the vault's password with --vault-password-file (a new "
            f"password could not open the existing vault)")
    risk = git_tracks_risk(path)
    if risk:
        raise PrepareError(f"will not create the vault password file {path}: {risk}; choose a "
                           f"path outside the repository or git-ignore it")
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
        path.parent.chmod(0o700)  # whatever the umask
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")
    os.chmod(path, 0o600)
    report.append(f"created the vault password file {path} (mode 0600) - keep it safe, "
                  f"without it the vault cannot be opened")


def replace_or_append(text: str, key: str, value: str) -> str:
    """Set `key: "value"` in plain vault text, keeping the user's other lines and comments."""
    lines = text.splitlines(keepends=True)
    new_line = f'{key}: "{value}"\n'
    index = top_level_line(lines, key)
    if index is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(new_line)
    else:
        end = index + 1
        while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
            end += 1
        # Keep blank lines that separate the value from what follows.
        while end > index + 1 and not lines[end - 1].strip():
            end -= 1
        lines[index:end] = [new_line]
    return "".join(lines)


def prepare_vault(path: Path, env: str, password_file: Path, source: str, rotate: set,
                  report: list) -> None:
    exists = path.exists()
    encrypted = exists and is_vault_encrypted(path)
    ensure_password_file(password_file, source, encrypted, report)
    if encrypted:
        try:
            text = vault_decrypt(path, password_file)
        except VaultError as exc:
            raise PrepareError(f"{exc}; pass the right file with --vault-password-file") from None
    elif exists:
        text = path.read_text()
        report.append(f"NOTE: {rel(path)} was plain text; it is encrypted now")
    else:
        text = VAULT_HEADER.format(env=env, path=rel(path))
    data = load_yaml_text(text, rel(path)) or {}
    if not isinstance(data, dict):
        raise PrepareError(f"{rel(path)} does not hold a mapping of vault_* variables; fix it by hand "
                           f"(ansible-vault edit) or move it aside")
    actions = []
    written = {}
    for secret in SECRETS:
        current = data.get(secret.name)
        if secret.name in rotate:
            written[secret.name] = generate(secret)
            actions.append(f"rotated {secret.name}" + (f" (note: {secret.note})" if secret.note else ""))
        elif secret.name not in data or is_placeholder(current):
            written[secret.name] = generate(secret)
            actions.append(("replaced the placeholder " if secret.name in data else "generated ")
                           + f"{secret.name} ({secret.purpose})")
        else:
            why = weakness(current, secret.min_length)
            report.append(f"kept {secret.name}" + (
                f" - WARNING: it {why}; replace it with --rotate {secret.name}" if why else ""))
        if secret.name in written:
            text = replace_or_append(text, secret.name, written[secret.name])
    # The edited text must hold what was meant, and everything else the vault held.
    new_data = load_yaml_text(text, rel(path)) or {}
    expected = {**data, **written}
    if new_data != expected:
        lost = sorted(k for k in expected if new_data.get(k) != expected[k])
        raise PrepareError(f"editing {rel(path)} would change {', '.join(lost)} unexpectedly; "
                           f"edit it with ansible-vault edit instead")
    if not actions and encrypted:
        report.append(f"unchanged {rel(path)} (encrypted)")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        vault_encrypt(text, password_file, path)
    except VaultError as exc:
        raise PrepareError(str(exc)) from None
    report.extend(actions)
    report.append(f"{'wrote' if exists else 'created'} {rel(path)} (encrypted with {password_file})")


# --------------------------------------------------------------------------- what is left

def left_to_edit(inventory: Path, hosts: dict, main: dict, settings: dict, env: str,
                 password_file: Path, default_pw: bool) -> list:
    todo = []
    paths = inventory_paths(inventory)
    addresses = []

    def walk(group):
        if not isinstance(group, dict):
            return
        for name, hv in (group.get("hosts") or {}).items():
            addresses.append((name, (hv or {}).get("ansible_host", name)))
        for child in (group.get("children") or {}).values():
            walk(child)

    walk((hosts or {}).get("all") or {})
    if not addresses:
        todo.append(f"{rel(paths['hosts'])}: add your server under all.children.web.hosts")
    for name, address in addresses:
        if is_documentation_address(address):
            todo.append(f"{rel(paths['hosts'])}: {name} has the example address {address}; "
                        f"set ansible_host (and ansible_user, the sudo user that logs in with your key)")
    keys = main.get("hardening_deploy_authorized_keys")
    if not keys:
        todo.append(f"{rel(paths['main'])}: hardening_deploy_authorized_keys - add your public key "
                    f"(the contents of ~/.ssh/id_ed25519.pub); after hardening only these keys log in")
    if not main.get("tls_acme_email"):
        todo.append(f"{rel(paths['main'])}: tls_acme_email - an address for certificate expiry "
                    f"notices (or --email)")
    if not main.get("backups_restic_repository") and main.get("backups_restic_enabled", True) is not False:
        todo.append(f"{rel(paths['main'])}: backups_restic_repository - where the off-site backup copies "
                    f"go (sftp:user@host:/path, s3:host/bucket/path, rest:https://host/path)")
    repo = str(main.get("app_repo_url") or "")
    if re.match(r"^(ssh://|[^/]+@[^/]+:)", repo) and not main.get("app_deploy_key"):
        todo.append(f"{rel(paths['main'])}: {repo} is an SSH URL - for a private repository add a "
                    f"deploy key to the vault (vault_app_deploy_key), map app_deploy_key to it "
                    f"and pin the Git server in app_known_hosts")
    todo.append(f"{rel(paths['main'])}: compare app_env and app_env_secrets with "
                f"your app's .env.example (validate.py checks them against the repository)")
    pw = "" if default_pw else f" --vault-password-file {password_file}"
    todo.append(f"then check everything: scripts/validate.py -i {rel(inventory)}{pw}")
    todo.append(f"and deploy: ansible-playbook site.yml -i {rel(inventory)} --vault-password-file {password_file}")
    return todo


# --------------------------------------------------------------------------- CLI

def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="prepare.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env", metavar="ENV", help="environment name: prod, staging, local, ...")
    parser.add_argument("--domain", help="public name of the app (its DNS points at the server); "
                        "needed until the inventory has one")
    parser.add_argument("--repo", help="Git URL of the app (https://, ssh://, git@host:path or file:///path); "
                        "needed until the inventory has one")
    parser.add_argument("--email", help="contact for certificate expiry notices (tls_acme_email)")
    parser.add_argument("--version", dest="app_version", help="branch, tag or commit to deploy (app_version)")
    parser.add_argument("--app-name", help="name of the deployment (shipshape_app_name)")
    parser.add_argument("--inventory", type=Path, help="inventory directory (default: inventories/ENV)")
    parser.add_argument("--vault-password-file", help="file with the vault password (default: "
                        "ANSIBLE_VAULT_PASSWORD_FILE, else ~/.config/shipshape/ENV.vault-pass)")
    parser.add_argument("--rotate", action="append", default=[], metavar="NAME",
                        help=f"replace this secret with a new one (repeatable; 'all' for every one): "
                             f"{', '.join(SECRET_NAMES)}")
    return parser.parse_args(argv)


def check_args(args) -> list:
    problems = []
    if not ENV_NAME.match(args.env):
        problems.append(f"ENV '{args.env}' is not a usable name: lower-case letters, digits, - and _ (e.g. prod)")
    if args.domain is not None and not DOMAIN.match(args.domain):
        problems.append(f"--domain '{args.domain}' is not a lower-case host name with a dot (e.g. app.example.com)")
    if args.repo is not None and not REPO_URL.match(args.repo):
        problems.append(f"--repo '{args.repo}' is not a Git URL: use https://HOST/PATH, ssh://USER@HOST/PATH, "
                        f"USER@HOST:PATH or file:///PATH (a repository on the server)")
    if args.email is not None and not EMAIL.match(args.email):
        problems.append(f"--email '{args.email}' is not an email address")
    if args.app_name is not None and not re.match(r"^[a-z][a-z0-9_-]{0,31}$", args.app_name):
        problems.append(f"--app-name '{args.app_name}' must be lower-case letters, digits, - and _")
    if args.app_version is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", args.app_version):
        problems.append(f"--version '{args.app_version}' is not a branch, tag or commit name")
    for name in args.rotate:
        if name != "all" and secret_by_name(name) is None:
            problems.append(f"--rotate {name}: no such secret; choose from {', '.join(SECRET_NAMES)} or all")
    return problems


def missing_required(main_path: Path, args) -> list:
    """The options that must be given because the inventory does not hold their value yet."""
    current = {}
    if main_path.exists():
        try:
            current = load_yaml_text(main_path.read_text(), rel(main_path)) or {}
        except ValueError:
            current = {}
    missing = []
    for option, given, variable in (("--domain", args.domain, "shipshape_domain"),
                                    ("--repo", args.repo, "app_repo_url")):
        if given is None and (not isinstance(current, dict) or is_placeholder(current.get(variable))):
            missing.append((option, variable))
    return missing


def main(argv=None) -> int:
    args = parse_args(argv)
    problems = check_args(args)
    if problems:
        for problem in problems:
            print(f"[shipshape] ERROR: {problem}", file=sys.stderr)
        return 2
    inventory = (args.inventory or REPO_ROOT / "inventories" / args.env).resolve()
    paths = inventory_paths(inventory)
    password_file, source = vault_password_file(args.vault_password_file, args.env)
    rotate = set(SECRET_NAMES) if "all" in args.rotate else {secret_by_name(n).name for n in args.rotate}
    settings = {}
    if args.domain is not None:
        settings["shipshape_domain"] = args.domain
    if args.repo is not None:
        settings["app_repo_url"] = args.repo
    if args.email is not None:
        settings["tls_acme_email"] = args.email
    if args.app_version is not None:
        settings["app_version"] = args.app_version
    if args.app_name is not None:
        settings["shipshape_app_name"] = args.app_name

    missing = missing_required(paths["main"], args)
    if missing:
        for option, variable in missing:
            print(f"[shipshape] ERROR: {option} is needed: {rel(paths['main'])} has no {variable} yet",
                  file=sys.stderr)
        return 2

    report = []
    try:
        hosts = prepare_hosts(paths["hosts"], args.env, report)
        main_data = prepare_main(paths["main"], args.env, settings, report)
        prepare_vault(paths["vault"], args.env, password_file, source, rotate, report)
    except (PrepareError, ValueError) as exc:
        for line in report:
            say(line)
        print(f"[shipshape] ERROR: {exc}", file=sys.stderr)
        return 1
    for line in report:
        say(line)
    changed = [line for line in report if not line.startswith(("unchanged", "kept"))]
    if not changed:
        say("nothing changed: the inventory already holds these settings and every secret")
    say()
    say(f"left to edit for {args.env} ({rel(inventory)}):")
    default_pw = source == "the default location"
    for item in left_to_edit(inventory, hosts, main_data, settings, args.env, password_file, default_pw):
        say(f"  - {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
