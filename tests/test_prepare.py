"""scripts/prepare.py: strong secrets into an encrypted vault, settings into main.yml, a
private vault password file outside Git; a second run changes nothing; an existing secret
is replaced only when asked (--rotate). Everything runs for real (ansible-vault, git) in
temporary directories; the repository's own inventories are only read."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import check_log_secrets  # noqa: E402
import inventory_common  # noqa: E402
import prepare  # noqa: E402

PREPARE = [sys.executable, str(REPO / "scripts/prepare.py")]
VAULT_TOOL = str(Path(sys.executable).parent / "ansible-vault")
ARGS = ["--domain", "app.example.org", "--repo", "https://git.example.org/team/app.git",
        "--email", "ops@example.org"]


def run(*args, env=None, cwd=REPO):
    return subprocess.run([*PREPARE, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120, check=False)


@pytest.fixture
def home(tmp_path):
    """A private XDG config home, so the default password file lands in tmp_path."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    return env


def paths(tmp_path, env_name="qa"):
    inv = tmp_path / "inventories" / env_name
    return inv, inv / "hosts.yml", inv / "group_vars/all/main.yml", inv / "group_vars/all/vault.yml"


def decrypt(vault: Path, password_file: Path) -> dict:
    """The vault's values, each handed to the run's scan of the logs for secrets."""
    text = inventory_common.vault_decrypt(vault, password_file)
    check_log_secrets.record(f"prepare-test-vault-{uuid.uuid4().hex[:8]}.yml", text)
    check_log_secrets.record(f"prepare-test-vault-password-{uuid.uuid4().hex[:8]}", password_file.read_text())
    return yaml.safe_load(text)


def snapshot(*roots: Path) -> dict:
    """Content, mode and mtime of every file under the roots."""
    out = {}
    for root in roots:
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                st = path.stat()
                out[str(path)] = (path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def test_first_run_writes_an_encrypted_vault_of_strong_secrets(tmp_path, home):
    inv, hosts, main, vault = paths(tmp_path)
    proc = run("qa", *ARGS, "--inventory", str(inv), env=home)
    assert proc.returncode == 0, proc.stderr
    password_file = tmp_path / "config/shipshape/qa.vault-pass"
    # The password file: outside the inventory, private, in a private directory.
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(password_file.parent.stat().st_mode) == 0o700
    assert len(password_file.read_text().strip()) >= 32
    # The vault: encrypted on disk, every secret present and strong.
    assert vault.read_bytes().startswith(b"$ANSIBLE_VAULT;1.1;AES256")
    assert stat.S_IMODE(vault.stat().st_mode) == 0o600
    data = decrypt(vault, password_file)
    assert set(data) == set(inventory_common.SECRET_NAMES)
    for secret in inventory_common.SECRETS:
        assert inventory_common.weakness(data[secret.name], secret.min_length) is None, secret.name
    assert len(set(data.values())) == len(data)
    # The settings, and the mapping of the vault to the roles' variables.
    settings = yaml.safe_load(main.read_text())
    assert settings["shipshape_domain"] == "app.example.org"
    assert settings["app_repo_url"] == "https://git.example.org/team/app.git"
    assert settings["tls_acme_email"] == "ops@example.org"
    assert settings["app_env_secrets"]["SECRET_KEY"] == "{{ vault_django_secret_key }}"
    assert settings["app_env_secrets"]["DJANGO_SUPERUSER_PASSWORD"] == "{{ vault_superuser_password }}"
    assert settings["app_env"]["DJANGO_SUPERUSER_USERNAME"] == "admin"
    # How the app runs is its own shipshape.yml's to say; the inventory only may override it.
    assert "app_preset" not in settings and "app_once_services" not in settings
    assert "shipshape.yml" in main.read_text()
    assert settings["backups_restic_password"] == "{{ vault_restic_password }}"
    assert yaml.safe_load(hosts.read_text())["all"]["children"]["web"]["hosts"]
    # No secret value is printed; what is left to edit is.
    out = proc.stdout + proc.stderr
    for value in [*data.values(), password_file.read_text().strip()]:
        assert value not in out
    assert "left to edit" in out
    assert "203.0.113.10" in out and "hardening_deploy_authorized_keys" in out
    assert "validate.py -i" in out


def test_second_run_changes_nothing(tmp_path, home):
    inv, *_ = paths(tmp_path)
    assert run("qa", *ARGS, "--inventory", str(inv), env=home).returncode == 0
    before = snapshot(inv, tmp_path / "config")
    proc = run("qa", *ARGS, "--inventory", str(inv), env=home)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(inv, tmp_path / "config") == before
    assert "nothing changed" in proc.stdout


def test_an_existing_secret_is_replaced_only_when_named(tmp_path, home):
    inv, _, _, vault = paths(tmp_path)
    password_file = tmp_path / "config/shipshape/qa.vault-pass"
    assert run("qa", *ARGS, "--inventory", str(inv), env=home).returncode == 0
    first = decrypt(vault, password_file)
    # Once the inventory has its domain and repository, --rotate needs nothing else.
    proc = run("qa", "--inventory", str(inv), "--rotate", "postgres_password", env=home)
    assert proc.returncode == 0, proc.stderr
    second = decrypt(vault, password_file)
    assert second["vault_postgres_password"] != first["vault_postgres_password"]
    assert {k: v for k, v in second.items() if k != "vault_postgres_password"} == \
        {k: v for k, v in first.items() if k != "vault_postgres_password"}
    assert "rotated vault_postgres_password" in proc.stdout
    assert "ALTER USER" in proc.stdout  # what rotating a database password implies
    assert second["vault_postgres_password"] not in proc.stdout + proc.stderr


def test_placeholders_are_replaced_real_values_kept_and_a_weak_one_flagged(tmp_path, home):
    """A vault.yml written by hand from vault.yml.example (plain text, CHANGE_ME), with one
    real but weak value and a setting of the user's own: prepare encrypts it, fills the
    placeholders, keeps the user's values and says which one is weak."""
    inv, _, _, vault = paths(tmp_path)
    vault.parent.mkdir(parents=True)
    example = (REPO / "inventories/prod/group_vars/all/vault.yml.example").read_text()
    vault.write_text(example.replace("vault_superuser_password: CHANGE_ME",
                                     "vault_superuser_password: hunter2")
                     + 'vault_smtp_password: "kept-as-is-0123456789abcdef"\n')
    proc = run("qa", *ARGS, "--inventory", str(inv), env=home)
    assert proc.returncode == 0, proc.stderr
    assert inventory_common.is_vault_encrypted(vault)
    data = decrypt(vault, tmp_path / "config/shipshape/qa.vault-pass")
    assert data["vault_superuser_password"] == "hunter2"  # never overwritten unasked
    assert data["vault_smtp_password"] == "kept-as-is-0123456789abcdef"
    for name in ("vault_django_secret_key", "vault_postgres_password", "vault_restic_password"):
        assert not inventory_common.is_placeholder(data[name])
        assert inventory_common.weakness(data[name], 16) is None
    assert "replaced the placeholder vault_django_secret_key" in proc.stdout
    assert "WARNING" in proc.stdout and "--rotate vault_superuser_password" in proc.stdout
    assert "hunter2" not in proc.stdout + proc.stderr


def test_comments_and_other_settings_in_main_yml_survive_an_update(tmp_path, home):
    inv, _, main, _ = paths(tmp_path)
    assert run("qa", *ARGS, "--inventory", str(inv), env=home).returncode == 0
    main.write_text(main.read_text() + "# my own note\nmy_setting: 42\n")
    before = main.read_text()
    proc = run("qa", "--domain", "www.example.org", "--repo", "https://git.example.org/team/app.git",
               "--inventory", str(inv), env=home)
    assert proc.returncode == 0, proc.stderr
    after = main.read_text()
    assert after == before.replace("shipshape_domain: app.example.org", "shipshape_domain: www.example.org")
    assert "updated" in proc.stdout and "shipshape_domain" in proc.stdout


def test_wrong_vault_password_is_refused_and_nothing_changes(tmp_path, home):
    inv, *_ = paths(tmp_path)
    assert run("qa", *ARGS, "--inventory", str(inv), env=home).returncode == 0
    other = tmp_path / "other.vault-pass"
    other.write_text("not-the-password\n")
    other.chmod(0o600)
    before = snapshot(inv, tmp_path / "config", other)
    proc = run("qa", *ARGS, "--inventory", str(inv), "--vault-password-file", str(other),
               "--rotate", "all", env=home)
    assert proc.returncode == 1
    assert "wrong vault password" in proc.stderr and "--vault-password-file" in proc.stderr
    assert str(other) in proc.stderr
    assert snapshot(inv, tmp_path / "config", other) == before


def test_an_existing_vault_without_its_password_file_is_not_given_a_new_password(tmp_path, home):
    inv, _, _, vault = paths(tmp_path)
    assert run("qa", *ARGS, "--inventory", str(inv), env=home).returncode == 0
    (tmp_path / "config/shipshape/qa.vault-pass").rename(tmp_path / "saved.vault-pass")
    before = snapshot(inv)
    proc = run("qa", *ARGS, "--inventory", str(inv), env=home)
    assert proc.returncode == 1
    assert "password file" in proc.stderr and "does not exist" in proc.stderr
    assert not (tmp_path / "config/shipshape/qa.vault-pass").exists()
    assert snapshot(inv) == before


def test_a_password_file_git_could_pick_up_is_refused(tmp_path, home):
    work = tmp_path / "checkout"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    inv, *_ = paths(tmp_path)
    proc = run("qa", *ARGS, "--inventory", str(inv), "--vault-password-file", str(work / "vault-pw.txt"),
               env=home)
    assert proc.returncode == 1
    assert "not git-ignored" in proc.stderr
    assert not (work / "vault-pw.txt").exists()
    assert not (inv / "group_vars/all/vault.yml").exists()
    # Git-ignored, the same place is accepted.
    (work / ".gitignore").write_text("vault-pw.txt\n")
    proc = run("qa", *ARGS, "--inventory", str(inv), "--vault-password-file", str(work / "vault-pw.txt"),
               env=home)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((work / "vault-pw.txt").stat().st_mode) == 0o600


@pytest.mark.parametrize("args, names", [
    (["qa", "--domain", "localhost", "--repo", "https://git.example.org/a.git"], "--domain"),
    (["qa", "--domain", "App.Example.org", "--repo", "https://git.example.org/a.git"], "--domain"),
    (["qa", "--domain", "app.example.org", "--repo", "git.example.org/a.git"], "--repo"),
    (["qa", "--domain", "app.example.org", "--repo", "https://git.example.org/a.git", "--email", "ops"], "--email"),
    (["Prod!", "--domain", "app.example.org", "--repo", "https://git.example.org/a.git"], "ENV"),
    (["qa", "--domain", "app.example.org", "--repo", "https://git.example.org/a.git", "--rotate", "nope"], "--rotate nope"),
    (["qa", "--repo", "https://git.example.org/a.git"], "--domain is needed"),
    (["qa", "--domain", "app.example.org"], "--repo is needed"),
], ids=["not-a-fqdn", "upper-case-domain", "repo-without-scheme", "bad-email", "bad-env-name", "unknown-secret",
        "new-inventory-without-domain", "new-inventory-without-repo"])
def test_bad_arguments_are_named_and_nothing_is_written(tmp_path, home, args, names):
    inv = tmp_path / "inventories" / "x"
    proc = run(*args, "--inventory", str(inv), env=home)
    assert proc.returncode == 2
    assert names in proc.stderr and "ERROR" in proc.stderr
    assert not inv.exists()
    assert not (tmp_path / "config").exists()


def test_help():
    proc = run("--help")
    assert proc.returncode == 0
    assert "usage:" in proc.stdout and "--rotate" in proc.stdout and "--vault-password-file" in proc.stdout


def test_committed_prod_and_staging_settings_are_the_template():
    for env in ("prod", "staging"):
        assert (REPO / f"inventories/{env}/group_vars/all/main.yml").read_text() == prepare.main_template(env)
    assert "tls_acme_server: staging" in prepare.main_template("staging")


def test_the_vault_example_names_every_secret_with_a_placeholder():
    for env in ("prod", "staging"):
        example = yaml.safe_load((REPO / f"inventories/{env}/group_vars/all/vault.yml.example").read_text())
        assert set(example) == set(inventory_common.SECRET_NAMES)
        assert all(inventory_common.is_placeholder(v) for v in example.values())


def test_ansible_ignores_the_example_and_reads_the_vault(tmp_path, home):
    """The .example beside the vault is not loaded as variables; the vault is, decrypted."""
    inv, _, _, vault = paths(tmp_path)
    assert run("qa", *ARGS, "--inventory", str(inv), env=home).returncode == 0
    shutil.copy(REPO / "inventories/prod/group_vars/all/vault.yml.example", vault.parent)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "all", "-i", str(inv), "-m", "ansible.builtin.debug",
         "-a", "msg={{ (app_env_secrets.DJANGO_SUPERUSER_PASSWORD | length > 20) and (vault_restic_password != 'CHANGE_ME') }}",
         "--vault-password-file", str(tmp_path / "config/shipshape/qa.vault-pass")],
        capture_output=True, text=True, env=dict(home, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")),
        cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"msg": true' in proc.stdout


def test_the_demo_vault_is_git_ignored_and_prod_vault_is_not():
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q",
                              "inventories/local/group_vars/all/vault.yml"], check=False)
    assert ignored.returncode == 0
    tracked = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q",
                              "inventories/prod/group_vars/all/vault.yml"], check=False)
    assert tracked.returncode == 1  # the user's own encrypted vault may be committed
