"""scripts/validate.py against real servers: systemd + sshd host containers reached over real
SSH with a key made for the run, an inventory made by the real scripts/prepare.py, and one
bad input at a time. Each bad input gives a FAIL row that names the thing and the fix, exit
status 1, and the servers' /etc, /srv, /home and /root are exactly as before (listing with
sizes, modes, owners and mtimes, and a checksum of every file).

The containers and the network are named shipshape-validate-test* and removed at the end."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import check_log_secrets  # noqa: E402  (the run's scan of the logs searches them for the secrets made here)
import demo  # noqa: E402  (the demo's helpers start and provision host containers)
import inventory_common  # noqa: E402
import prepare  # noqa: E402
from testbed_common import docker_answers, image_exists  # noqa: E402

PREFIX = "shipshape-validate-test"
SERVER = PREFIX
OLD_OS = f"{PREFIX}-debian11"
NETWORK = PREFIX
DOMAIN = "app.shipshape.test"
VALIDATE = [sys.executable, str(REPO / "scripts/validate.py")]
PREPARE = [sys.executable, str(REPO / "scripts/prepare.py")]

DEBIAN_11 = """PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"
NAME="Debian GNU/Linux"
VERSION_ID="11"
VERSION="11 (bullseye)"
VERSION_CODENAME=bullseye
ID=debian
"""


def remove_ours() -> None:
    for name in (SERVER, OLD_OS):
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)
    subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True, check=False)


def snapshot(container: str) -> str:
    """What a change on the server would alter: the listing and the checksums of its files."""
    script = ("find /etc /srv /home /root -xdev -printf '%p %y %s %m %u %g %T@ %l\\n' 2>/dev/null | sort; "
              "find /etc /srv /home /root -xdev -type f -exec sha256sum {} + 2>/dev/null | sort")
    proc = subprocess.run(["docker", "exec", container, "sh", "-c", script],
                          capture_output=True, text=True, check=True, timeout=120)
    return proc.stdout


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    if not docker_answers():
        pytest.fail("no Docker engine answers: start one with scripts/ensure_docker.py (`make engine`)")
    if not image_exists(demo.IMAGE):
        # Built here as `make images` builds it (cached by its recipe's hash).
        build = subprocess.run([sys.executable, str(REPO / "scripts/build_images.py")],
                               capture_output=True, text=True, timeout=1200, check=False)
        assert build.returncode == 0 and image_exists(demo.IMAGE), build.stderr[-3000:]
    tmp = tmp_path_factory.mktemp("validate-servers")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PREFIX, "-f", str(key)], check=True)
    check_log_secrets.record("validate-test-ssh-key", key.read_text())
    remove_ours()
    try:
        demo.run_host(SERVER, NETWORK, "validate-test")
        demo.run_host(OLD_OS, NETWORK, "old-os")
        # The release files are written inside the container (not bind-mounted from a
        # temporary directory of this run, which another pytest run may clean away).
        subprocess.run(["docker", "exec", "-i", OLD_OS, "sh", "-c",
                        "rm -f /etc/os-release /etc/debian_version && cat > /etc/os-release "
                        "&& echo 11.11 > /etc/debian_version"],
                       input=DEBIAN_11, text=True, check=True, timeout=60)
        known = []
        info = {"key": key, "known_hosts": tmp / "known_hosts"}
        for name in (SERVER, OLD_OS):
            demo.provision_login(name, key)
            demo.put_repository(name)
            ip = demo.container_ip(name)
            demo.wait_for_ssh(host=ip, port=22, known_hosts=tmp / f"{name}.known")
            known.append((tmp / f"{name}.known").read_text())
            info[name] = ip
        info["known_hosts"].write_text("".join(known))
        yield info
    finally:
        remove_ours()


@pytest.fixture(scope="module")
def good(servers, tmp_path_factory):
    """An inventory for the test server made by prepare.py, which validate.py passes."""
    base = tmp_path_factory.mktemp("validate-good")
    inv = base / "inventories" / "vt"
    password_file = base / "vt.vault-pass"
    proc = subprocess.run([*PREPARE, "vt", "--domain", DOMAIN, "--repo", "file:///srv/git/example.git",
                           "--email", "ops@shipshape.test", "--app-name", "example",
                           "--inventory", str(inv), "--vault-password-file", str(password_file)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    write_hosts(inv, servers, servers[SERVER])
    edit_main(inv, "hardening_deploy_authorized_keys", [servers["key"].with_suffix(".pub").read_text().strip()])
    # The test domain has no DNS: the inventory states where it points (a WARN, never a PASS).
    edit_main(inv, "shipshape_dns_overrides", {DOMAIN: servers[SERVER]})
    edit_main(inv, "backups_restic_repository", "/var/lib/shipshape-offsite/restic")
    check_log_secrets.record("validate-test-vault-password", password_file.read_text())
    check_log_secrets.record("validate-test-vault.yml", inventory_common.vault_decrypt(inv / "group_vars/all/vault.yml",
                                                                             password_file))
    secrets = list(yaml.safe_load(inventory_common.vault_decrypt(inv / "group_vars/all/vault.yml",
                                                                 password_file)).values())
    return {"inv": inv, "password_file": password_file, "secrets": secrets}


def write_hosts(inv: Path, servers: dict, address: str, **extra) -> None:
    host = {"ansible_host": address, "ansible_user": "deploy",
            "ansible_ssh_private_key_file": str(servers["key"]),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={servers['known_hosts']} -o StrictHostKeyChecking=yes",
            **extra}
    (inv / "hosts.yml").write_text("---\n" + yaml.safe_dump(
        {"all": {"children": {"web": {"hosts": {"vt": host}}}}}, sort_keys=False))


def edit_main(inv: Path, key: str, value) -> None:
    path = inv / "group_vars/all/main.yml"
    text, _ = prepare.set_scalar(path.read_text(), key, value, path)
    path.write_text(text)


def drop_main(inv: Path, key: str) -> None:
    path = inv / "group_vars/all/main.yml"
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if not line.startswith(f"{key}:")))


def edit_vault(inv: Path, password_file: Path, key: str, value: str) -> None:
    vault = inv / "group_vars/all/vault.yml"
    text = prepare.replace_or_append(inventory_common.vault_decrypt(vault, password_file), key, value)
    inventory_common.vault_encrypt(text, password_file, vault)


def validate(inv: Path, *args: str) -> tuple:
    proc = subprocess.run([*VALIDATE, "-i", str(inv), *args], capture_output=True, text=True,
                          timeout=600, check=False)
    return proc


def rows_of(proc) -> list:
    return json.loads(proc.stdout)["checks"]


# ------------------------------------------------------------------ the good inventory

def test_a_prepared_inventory_passes_with_warnings_only(good, servers):
    before = snapshot(SERVER)
    proc = validate(good["inv"], "--vault-password-file", str(good["password_file"]), "--json")
    assert snapshot(SERVER) == before
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["check"]: r for r in rows_of(proc)}
    assert not [r for r in rows.values() if r["status"] == "FAIL"]
    for check in ("yaml", "vault", "variables", "hosts", "ssh vt", "become vt", "os vt", "disk vt",
                  "memory vt", "repository", "env keys", "syntax-check"):
        assert rows[check]["status"] == "PASS", rows[check]
    for name in inventory_common.SECRET_NAMES:
        assert rows[f"secret {name}"]["status"] == "PASS"
    assert rows["os vt"]["detail"].startswith("Debian 13")
    # The test domain's address comes from the inventory, which is said, not passed off as DNS.
    assert rows[f"dns {DOMAIN}"]["status"] == "WARN"
    assert "shipshape_dns_overrides" in rows[f"dns {DOMAIN}"]["detail"]
    # Before the first deploy nothing listens on 80 and 443: a WARN, not a failure.
    assert rows["port 80"]["status"] in ("WARN", "PASS") and rows["port 443"]["status"] in ("WARN", "PASS")
    assert rows["compose"]["status"] in ("PASS", "WARN")
    for value in good["secrets"]:
        assert value not in proc.stdout + proc.stderr


def test_the_table_names_check_status_detail_and_fix(good):
    proc = validate(good["inv"], "--vault-password-file", str(good["password_file"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header = proc.stdout.splitlines()[0].split()
    assert header == ["CHECK", "STATUS", "DETAIL", "FIX"]
    assert re.search(r"(?m)^ssh vt\s+PASS\s+logged in as", proc.stdout)
    assert "validate passed" in proc.stdout


def test_help():
    proc = subprocess.run([*VALIDATE, "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert "usage:" in proc.stdout and "--json" in proc.stdout and "shipshape_dns_overrides" in proc.stdout


# ------------------------------------------------------------------ one bad input at a time

def case_missing_variable(inv, pw, servers):
    drop_main(inv, "app_repo_url")


def case_no_offsite_backup_repository(inv, pw, servers):
    edit_main(inv, "backups_restic_repository", "")


def case_placeholder_secret(inv, pw, servers):
    edit_vault(inv, pw, "vault_django_secret_key", "CHANGE_ME")


def case_weak_secret(inv, pw, servers):
    edit_vault(inv, pw, "vault_postgres_password", "abc123xyz")


def case_wrong_vault_password(inv, pw, servers):
    wrong = inv.parent / "wrong.vault-pass"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    return ["--vault-password-file", str(wrong)]


def case_unresolvable_domain(inv, pw, servers):
    edit_main(inv, "shipshape_domain", "nowhere.shipshape-validate-test.invalid")


def case_domain_elsewhere_by_the_resolver(inv, pw, servers):
    # "localhost" resolves everywhere (RFC 6761), and never to the test server.
    edit_main(inv, "shipshape_domain", "localhost")


def case_domain_elsewhere_by_the_inventory(inv, pw, servers):
    edit_main(inv, "shipshape_dns_overrides", {DOMAIN: "192.0.2.44"})


def case_unreachable_host(inv, pw, servers):
    write_hosts(inv, servers, servers[SERVER], ansible_port=2)  # nothing listens there


def case_bad_repository_on_the_server(inv, pw, servers):
    edit_main(inv, "app_repo_url", "file:///srv/git/missing.git")


def case_bad_repository_url_from_here(inv, pw, servers):
    edit_main(inv, "app_repo_url", "http://127.0.0.1:9/team/app.git")


def case_invalid_yaml(inv, pw, servers):
    path = inv / "group_vars/all/main.yml"
    path.write_text(path.read_text() + "app_env_extra: [unclosed\n")


def case_two_database_hosts(inv, pw, servers):
    write_hosts(inv, servers, servers[SERVER])
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    vt = hosts["all"]["children"]["web"]["hosts"]["vt"]
    hosts["all"]["children"]["db"] = {"hosts": {"vt": None, "vt-db2": dict(vt)}}
    (inv / "hosts.yml").write_text("---\n" + yaml.safe_dump(hosts, sort_keys=False))


def case_web_host_without_the_database_host(inv, pw, servers):
    # The server is a web host; a database host is added, but POSTGRES_HOST still names the
    # database service on the web host itself.
    write_hosts(inv, servers, servers[SERVER])
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    db = dict(hosts["all"]["children"]["web"]["hosts"]["vt"])
    hosts["all"]["children"]["db"] = {"hosts": {"vt-db": db}}
    (inv / "hosts.yml").write_text("---\n" + yaml.safe_dump(hosts, sort_keys=False))


REGISTRY_PASSWORD = "registry-pw-Zq8LmT3xW"


def case_registry_password_without_user(inv, pw, servers):
    edit_main(inv, "app_image_source", "pull")
    edit_main(inv, "app_registry_password", "{{ vault_registry_password }}")
    edit_vault(inv, pw, "vault_registry_password", REGISTRY_PASSWORD)


SHORT_ADMIN_PASSWORD = "Zq8-LmT3xWk"  # 11 characters


def case_short_admin_password(inv, pw, servers):
    edit_vault(inv, pw, "vault_superuser_password", SHORT_ADMIN_PASSWORD)


def case_unknown_preset(inv, pw, servers):
    edit_main(inv, "app_preset", "rails")


def case_hook_without_a_command(inv, pw, servers):
    edit_main(inv, "app_hooks", {"after_switch": [{"name": "warm the cache"}]})


def case_unsupported_os(inv, pw, servers):
    write_hosts(inv, servers, servers[OLD_OS])
    edit_main(inv, "shipshape_dns_overrides", {DOMAIN: servers[OLD_OS]})


CASES = [
    # (mutation, check, detail pattern, fix pattern, server)
    (case_missing_variable, "variable app_repo_url", r"app_repo_url is not set",
     r"prepare\.py vt .*--repo URL", SERVER),
    (case_no_offsite_backup_repository, "variable backups_restic_repository",
     r"backups_restic_repository is empty", r"set backups_restic_repository in .*sftp:", SERVER),
    (case_placeholder_secret, "secret vault_django_secret_key", r"vault_django_secret_key is empty or a placeholder",
     r"prepare\.py vt .*replaces placeholders", SERVER),
    (case_weak_secret, "secret vault_postgres_password", r"vault_postgres_password is too short \(9 characters; at least 16\)",
     r"--rotate vault_postgres_password", SERVER),
    (case_wrong_vault_password, "vault", r"does not decrypt with the password in .*wrong\.vault-pass \(wrong vault password\)",
     r"--vault-password-file", SERVER),
    (case_unresolvable_domain, "dns nowhere.shipshape-validate-test.invalid",
     r"nowhere\.shipshape-validate-test\.invalid does not resolve", r"create a DNS A record .* -> {ip}", SERVER),
    (case_domain_elsewhere_by_the_resolver, "dns localhost", r"localhost resolves to .*127\.0\.0\.1.* but the server is {ip}",
     r"point localhost's A/AAAA records at {ip}", SERVER),
    (case_domain_elsewhere_by_the_inventory, f"dns {DOMAIN}", r"resolves to 192\.0\.2\.44 by shipshape_dns_overrides",
     r"point app\.shipshape\.test's A/AAAA records at {ip}", SERVER),
    (case_unreachable_host, "ssh vt", r"cannot log in as deploy@{ip}:2:",
     r"check ansible_host / ansible_port of vt", SERVER),
    (case_bad_repository_on_the_server, "repository", r"file:///srv/git/missing\.git: no such directory",
     r"--repo URL", SERVER),
    (case_bad_repository_url_from_here, "repository", r"git ls-remote http://127\.0\.0\.1:9/team/app\.git failed from here",
     r"check app_repo_url", SERVER),
    (case_invalid_yaml, "yaml", r"group_vars/all/main\.yml, line \d+ column \d+",
     r"fix the YAML syntax of .*main\.yml", SERVER),
    (case_two_database_hosts, "hosts", r"group db has 2 servers \(vt, vt-db2\); the shared database runs on one",
     r"keep one server under all\.children\.db\.hosts", SERVER),
    (case_web_host_without_the_database_host, "database",
     r"the database runs on vt-db \(group db\), but the web hosts look for it on themselves "
     r"\(app_env\.POSTGRES_HOST of vt: db\)",
     r"set app_env\.POSTGRES_HOST for the web hosts .* to the private address of vt-db", SERVER),
    (case_registry_password_without_user, "variable app_registry_username",
     r"app_registry_username is empty while app_registry_password is set",
     r"set both in .*main\.yml .*or neither for a public registry", SERVER),
    (case_short_admin_password, "variable app_env_secrets.DJANGO_SUPERUSER_PASSWORD",
     r"app_env_secrets\.DJANGO_SUPERUSER_PASSWORD is shorter than 12 characters",
     r"vault_superuser_password .*--rotate vault_superuser_password", SERVER),
    (case_unknown_preset, "variable app_preset", r"app_preset is 'rails': it is django or none",
     r"set app_preset in .*main\.yml to django .* or none", SERVER),
    (case_hook_without_a_command, "variable app_hooks",
     r"app_hooks after_switch hook 'warm the cache': argv is not a non-empty list",
     r"fix app_hooks in .*main\.yml: .*argv", SERVER),
    (case_unsupported_os, "os vt", r"vt runs Debian 11.*supported are Debian 12 and 13",
     r"install Debian 13", OLD_OS),
]


@pytest.mark.parametrize("mutate, check, detail, fix, server", CASES,
                         ids=[c[0].__name__.removeprefix("case_") for c in CASES])
def test_bad_input_fails_names_the_thing_and_the_fix_and_changes_nothing(
        good, servers, tmp_path, mutate, check, detail, fix, server):
    inv = tmp_path / "inventories" / "vt"
    shutil.copytree(good["inv"], inv)
    password_file = tmp_path / "vt.vault-pass"
    shutil.copy(good["password_file"], password_file)
    args = mutate(inv, password_file, servers) or ["--vault-password-file", str(password_file)]
    before = snapshot(server)
    proc = validate(inv, *args, "--json")
    after = snapshot(server)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = rows_of(proc)
    wanted = [r for r in rows if r["check"] == check and r["status"] == "FAIL"]
    assert wanted, f"no FAIL row {check!r} in:\n" + "\n".join(f"{r['check']} {r['status']} {r['detail']}" for r in rows)
    ip = re.escape(servers[server])
    detail, fix = detail.replace("{ip}", ip), fix.replace("{ip}", ip)
    assert any(re.search(detail, r["detail"]) and re.search(fix, r["fix"]) for r in wanted), \
        "\n".join(f"{r['check']} {r['status']} {r['detail']}" for r in rows)
    assert after == before, "validate.py changed something on the server"
    out = proc.stdout + proc.stderr
    for value in [*good["secrets"], "abc123xyz", REGISTRY_PASSWORD, SHORT_ADMIN_PASSWORD]:
        assert value not in out


def test_a_repository_reached_from_here_is_listed_and_its_files_checked(good, servers, tmp_path):
    """A repository that is not on the server is listed and read from this machine (here over
    Git's plain HTTP protocol, served from a temporary directory)."""
    work = tmp_path / "src"
    shutil.copytree(REPO / "examples/django-app", work, ignore=shutil.ignore_patterns("__pycache__", ".env"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@shipshape.test", "-c", "init.defaultBranch=main",
           "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "app"], ["tag", "v1.0"]):
        subprocess.run([*git, *args], cwd=work, check=True)
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "app.git")], check=True)
    subprocess.run(["git", "-C", str(served / "app.git"), "update-server-info"], check=True)
    http = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
                            cwd=served, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = re.search(r"port (\d+)", http.stdout.readline()).group(1)
        inv = tmp_path / "inventories" / "vt"
        shutil.copytree(good["inv"], inv)
        edit_main(inv, "app_repo_url", f"http://127.0.0.1:{port}/app.git")
        edit_main(inv, "app_version", "v1.0")
        proc = validate(inv, "--vault-password-file", str(good["password_file"]), "--json")
        rows = {r["check"]: r for r in rows_of(proc)}
        assert rows["repository"]["status"] == "PASS", rows["repository"]
        assert "has v1.0" in rows["repository"]["detail"] and "from here" in rows["repository"]["detail"]
        assert rows["env keys"]["status"] == "PASS", rows["env keys"]
        assert rows["compose"]["status"] in ("PASS", "WARN") and "compose.yaml" in rows["compose"]["detail"]
        assert rows["manifest"]["status"] == "PASS" and "keeps the app contract" in rows["manifest"]["detail"]
        assert proc.returncode == 0, proc.stdout
        # A manifest that breaks the contract is a FAIL naming the file, the line, the key and the fix.
        manifest = work / "shipshape.yml"

        def publish(tag: str, text: str) -> None:
            """Commit the manifest's new text as TAG, push it, and make the inventory deploy it."""
            manifest.write_text(text)
            for args in (["commit", "-q", "-am", tag], ["tag", tag], ["push", "-q", str(served / "app.git"), tag]):
                subprocess.run([*git, *args], cwd=work, check=True)
            subprocess.run(["git", "-C", str(served / "app.git"), "update-server-info"], check=True)
            edit_main(inv, "app_version", tag)

        publish("v1.1", manifest.read_text() + "once_services: worker\n")
        proc = validate(inv, "--vault-password-file", str(good["password_file"]), "--json")
        row = next(r for r in rows_of(proc) if r["check"] == "manifest")
        assert proc.returncode == 1 and row["status"] == "FAIL", row
        assert re.search(r"shipshape.yml line \d+: once_services: must be a list, not a string", row["detail"]), row
        assert "app_* variable" in row["fix"]
        # An artifact the manifest pins without a URL, and none in the inventory: a FAIL naming the variable.
        publish("v1.2", manifest.read_text().replace("once_services: worker\n", "")
                + "artifacts:\n  - name: model.npy\n    sha256: " + "ab" * 32 + "\n")
        proc = validate(inv, "--vault-password-file", str(good["password_file"]), "--json")
        rows = {r["check"]: r for r in rows_of(proc)}
        assert rows["manifest"]["status"] == "PASS", rows["manifest"]
        assert proc.returncode == 1 and rows["artifacts"]["status"] == "FAIL", rows.get("artifacts")
        assert "the artifact model.npy has no URL: set app_artifact_urls" in rows["artifacts"]["detail"]
        assert "app_artifact_urls" in rows["artifacts"]["fix"]
        # A version that does not exist there is a FAIL that says so.
        edit_main(inv, "app_version", "v9.9")
        proc = validate(inv, "--vault-password-file", str(good["password_file"]), "--json")
        row = next(r for r in rows_of(proc) if r["check"] == "repository")
        assert proc.returncode == 1 and row["status"] == "FAIL"
        assert "has no branch or tag v9.9" in row["detail"] and "app_version" in row["fix"]
    finally:
        http.terminate()
        http.wait(timeout=10)
