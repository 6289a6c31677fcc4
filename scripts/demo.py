#!/usr/bin/env python3
"""The local demo: a Debian 13 "server" in a container, deployed to over real SSH.

  up        generate the local environment's secrets into its vault (`scripts/prepare.py
            local`, vault password in .demo/local.vault-pass), start the demo server (systemd,
            sshd, Docker inside; SSH, HTTP and HTTPS published on 127.0.0.1 only, with a key
            generated now) and a local ACME server (Pebble) that issues its certificate, put the
            example app's repository and the images it needs beside it, check everything with
            `scripts/validate.py -i inventories/local`, then run
            `ansible-playbook site.yml -i inventories/local` over SSH and print where the app is served.
  down      remove everything `up` made: containers, volumes, network, generated key, vault and
            its password.
  versions  add the example app's later versions (tags v1, v2, v3 ... of
            molecule/app/make_repo.py) to the demo server's repository, to try deploy.yml and
            rollback.yml on it.
  status    show whether the demo server runs and how to reach it.

The demo server stands in for a freshly rented server: a `deploy` user that logs in with
a key and may use sudo, as a cloud provider's image gives you.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_log_secrets  # noqa: E402
from testbed_common import (  # noqa: E402
    PROJECT, REPO_ROOT, TestbedError, die, docker_answers, run, say,
)

CONTAINER = f"{PROJECT}-demo"
ACME = f"{PROJECT}-demo-acme"
DOMAIN = "app.shipshape.test"
NETWORK = f"{PROJECT}-demo"
DOCKER_VOLUME = f"{CONTAINER}-var-lib-docker"
IMAGE = f"{PROJECT}/host:debian13"
STATE_DIR = REPO_ROOT / ".demo"
KEY = STATE_DIR / "id_ed25519"
KNOWN_HOSTS = STATE_DIR / "known_hosts"
VAULT_PASSWORD_FILE = STATE_DIR / "local.vault-pass"
ACME_ROOT = STATE_DIR / "acme-root.pem"
VAULT = REPO_ROOT / "inventories/local/group_vars/all/vault.yml"
# What `scripts/prepare.py local` is given: the settings of inventories/local.
ORIGIN = "/srv/git/example.git"  # the example app's repository on the demo server
PREPARE_ARGS = ["local", "--domain", DOMAIN, "--repo", f"file://{ORIGIN}",
                "--email", "ops@shipshape.test"]
DEPLOY_USER = "deploy"
PROVIDER_LOGIN = REPO_ROOT / "scripts/provider_login.sh"
SSH_PORT = int(os.environ.get("SHIPSHAPE_DEMO_SSH_PORT", "2222"))
HTTP_PORT = int(os.environ.get("SHIPSHAPE_DEMO_HTTP_PORT", "8080"))
HTTPS_PORT = int(os.environ.get("SHIPSHAPE_DEMO_HTTPS_PORT", "8443"))
PLATFORM_VARS = REPO_ROOT / "molecule/shared/vars/platform.yml"


def platform_args() -> list:
    """`docker run` flags that boot systemd without --privileged (shared with Molecule)."""
    import yaml  # from the project's virtualenv

    conf = yaml.safe_load(PLATFORM_VARS.read_text())
    args = ["--cap-drop", "ALL"]
    for cap in conf["shipshape_host_capabilities"]:
        args += ["--cap-add", cap]
    for opt in conf["shipshape_host_security_opts"]:
        args += ["--security-opt", opt]
    args += ["--cgroupns", conf["shipshape_host_cgroupns_mode"]]
    for vol in conf["shipshape_host_volumes"]:
        args += ["-v", vol]
    for tmpfs in conf["shipshape_host_tmpfs"]:
        args += ["--tmpfs", tmpfs]
    return args


def container_state(name: str = CONTAINER) -> str | None:
    proc = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", name],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def dexec(*cmd: str, input_text: str | None = None, container: str = CONTAINER) -> subprocess.CompletedProcess:
    return run(["docker", "exec", "-i", container, *cmd], capture=True,
               input_bytes=input_text.encode() if input_text is not None else None)


def wait_for_systemd(name: str = CONTAINER, timeout: int = 120) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(["docker", "exec", name, "systemctl", "is-system-running"],
                              capture_output=True, text=True, check=False)
        state = proc.stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise TestbedError(f"{name} did not finish booting (systemd: {state or 'no answer'})")


def generate_key() -> None:
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    if not KEY.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{PROJECT}-demo", "-f", str(KEY)])
        say(f"generated a demo SSH key: {KEY.relative_to(REPO_ROOT)}")


def run_host(name: str, network: str, hostname: str, *extra: str, image: str = IMAGE) -> None:
    """Start a systemd host container (without --privileged) on a network and wait for it to boot."""
    if subprocess.run(["docker", "network", "inspect", network], capture_output=True,
                      check=False).returncode != 0:
        run(["docker", "network", "create", network], capture=True)
    run(["docker", "run", "-d", "--name", name, "--hostname", hostname, "--network", network,
         *platform_args(), *extra, image, "/lib/systemd/systemd"], capture=True)
    wait_for_systemd(name)


def container_ip(name: str = CONTAINER) -> str:
    return run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                name], capture=True).stdout.decode().strip()


def start_server() -> None:
    state = container_state()
    if state == "running":
        say(f"demo server {CONTAINER} already runs")
        return
    if state is not None:
        run(["docker", "start", CONTAINER])
    else:
        say(f"starting the demo server {CONTAINER} ({IMAGE})")
        # IPv6 on, as on a server (Docker turns it off on an IPv4 network): the firewall
        # must filter it too, and the tests probe the server's link-local address.
        run_host(CONTAINER, NETWORK, "demo", "--network-alias", DOMAIN,
                 "--sysctl", "net.ipv6.conf.all.disable_ipv6=0",
                 "-v", f"{DOCKER_VOLUME}:/var/lib/docker",
                 "-p", f"127.0.0.1:{SSH_PORT}:22",
                 "-p", f"127.0.0.1:{HTTP_PORT}:80",
                 "-p", f"127.0.0.1:{HTTPS_PORT}:443",
                 "--label", f"{PROJECT}.demo=1")
        return
    wait_for_systemd()


def provision_login(container: str = CONTAINER, key: Path = KEY) -> None:
    """What a provider does for a new server: a sudo user that logs in with your key."""
    dexec("sh", "-c", PROVIDER_LOGIN.read_text(), "sh", DEPLOY_USER,
          input_text=key.with_suffix(".pub").read_text(), container=container)
    # A container has a read-only /proc/sys; Docker 26 needs this to start containers there.
    dexec("sh", "-c", "install -d /etc/systemd/system/docker.service.d && "
          "printf '[Service]\\nEnvironment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\\n' "
          "> /etc/systemd/system/docker.service.d/10-demo-container.conf", container=container)


def wait_for_ssh(timeout: int = 60, host: str = "127.0.0.1", port: int = SSH_PORT,
                 known_hosts: Path = KNOWN_HOSTS) -> None:
    """Wait until sshd answers, and record its host key in known_hosts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = subprocess.run(["ssh-keyscan", "-p", str(port), "-t", "ed25519", host],
                              capture_output=True, text=True, check=False, timeout=15)
        if proc.returncode == 0 and proc.stdout.strip():
            known_hosts.write_text(proc.stdout)
            known_hosts.chmod(0o600)
            return
        time.sleep(1)
    raise TestbedError(f"sshd did not answer on {host}:{port}")


def trust_network_address() -> str:
    """The demo server's address on the demo network, with its host key there added to
    known_hosts beside the one for 127.0.0.1: for the tests and benchmarks that reach the
    server at its own address, as a rented server is reached."""
    ip = container_ip()
    # Read from the server's file, not with ssh-keyscan: fail2ban counts a connection that
    # does not log in, and this is the address Ansible uses.
    key = subprocess.run(["docker", "exec", CONTAINER, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"],
                         capture_output=True, text=True, check=False, timeout=30)
    if key.returncode != 0 or not key.stdout.startswith("ssh-ed25519 "):
        raise TestbedError(f"the demo server {CONTAINER} has no ed25519 host key: {key.stderr.strip()}")
    line = f"{ip} {' '.join(key.stdout.split()[:2])}\n"
    if line not in KNOWN_HOSTS.read_text():
        with open(KNOWN_HOSTS, "a") as known:
            known.write(line)
    return ip


def prepare_vault() -> None:
    """The local environment's secrets, generated once into its encrypted vault."""
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/prepare.py"), *PREPARE_ARGS,
                           "--vault-password-file", str(VAULT_PASSWORD_FILE)],
                          cwd=REPO_ROOT, check=False)
    if proc.returncode != 0:
        raise TestbedError(f"scripts/prepare.py {' '.join(PREPARE_ARGS)} failed (exit {proc.returncode})")


def register_secrets() -> None:
    """Under `make test`, hand the demo's generated secrets (its SSH key, the vault password and
    the vault's values) to the run's scan of the logs (scripts/check_log_secrets.py)."""
    if not os.environ.get(check_log_secrets.REGISTER_VARIABLE):
        return
    from inventory_common import vault_decrypt
    check_log_secrets.record("demo-ssh-key", KEY.read_text())
    check_log_secrets.record("demo-vault-password", VAULT_PASSWORD_FILE.read_text())
    check_log_secrets.record("demo-vault.yml", vault_decrypt(VAULT, VAULT_PASSWORD_FILE))


def validate() -> None:
    """The pre-flight check of inventories/local; a FAIL stops the demo before any change."""
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/validate.py"), "-i", "inventories/local",
                           "--vault-password-file", str(VAULT_PASSWORD_FILE)],
                          cwd=REPO_ROOT, check=False)
    if proc.returncode != 0:
        raise TestbedError("scripts/validate.py -i inventories/local found problems (the FAIL rows above); "
                           "nothing was changed on the demo server")


def ship_images() -> None:
    """Archives of the images the demo server cannot pull (it has no registry here)."""
    proc = run([sys.executable, str(REPO_ROOT / "examples/images.py"), "--only", "db", "--json"],
               capture=True)
    postgres = json.loads(proc.stdout)["db"]
    images_dir = STATE_DIR / "images"
    images_dir.mkdir(exist_ok=True)
    archives = []
    for image, name in ((f"{PROJECT}/base:debian13", "base-debian13.tar"), (postgres, "postgres.tar")):
        target = images_dir / name
        image_id = run(["docker", "image", "inspect", "-f", "{{.Id}}", image], capture=True).stdout.decode().strip()
        marker = target.with_suffix(".id")
        if not target.exists() or not marker.exists() or marker.read_text() != image_id:
            say(f"exporting {image} for the demo server")
            run(["docker", "save", "-o", str(target), image])
            marker.write_text(image_id)
        archives.append({"src": str(target), "image": image})
    (STATE_DIR / "images.json").write_text(json.dumps({"archives": archives, "postgres": postgres}))


def put_repository(container: str = CONTAINER) -> None:
    """The example app as a Git repository on the demo server (file:///srv/git/example.git)."""
    with tempfile.TemporaryDirectory(prefix=f"{PROJECT}-demo-repo-") as tmp:
        work = Path(tmp, "example")
        shutil.copytree(REPO_ROOT / "examples/django-app", work,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".env"))
        git = ["git", "-c", "user.name=shipshape demo", "-c", "user.email=demo@shipshape.test",
               "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
        run([*git, "init", "-q"], cwd=work)
        run([*git, "add", "-A"], cwd=work)
        run([*git, "commit", "-q", "-m", "Example app"], cwd=work)
        run(["git", "clone", "-q", "--bare", str(work), str(Path(tmp, "example.git"))])
        dexec("rm", "-rf", ORIGIN, container=container)
        dexec("mkdir", "-p", str(Path(ORIGIN).parent), container=container)
        run(["docker", "cp", str(Path(tmp, "example.git")), f"{container}:{ORIGIN}"])
        dexec("chown", "-R", f"{DEPLOY_USER}:{DEPLOY_USER}", str(Path(ORIGIN).parent), container=container)


def add_versions(container: str = CONTAINER) -> dict:
    """Later versions of the example app as tags in the demo server's repository, beside the
    `main` that `up` deploys: v1, v2, v3 ... of molecule/app/make_repo.py (what each is for is
    said there). For the tests and benchmarks that deploy and roll back; {tag: commit}."""
    with tempfile.TemporaryDirectory(prefix=f"{PROJECT}-demo-versions-") as tmp:
        bare = Path(tmp, "example.git")
        run([sys.executable, str(REPO_ROOT / "molecule/app/make_repo.py"), str(REPO_ROOT / "examples/django-app"),
             str(bare)], capture=True)
        # Not to /tmp: it is a tmpfs in the container, which `docker cp` does not write into.
        run(["docker", "cp", str(bare), f"{container}:/var/tmp/example-versions.git"], capture=True)
    git = f"git -c safe.directory='*' -C {ORIGIN}"
    # '+': a second call (a benchmark on a demo whose versions a test added) replaces the tags.
    dexec("sh", "-ec", f"{git} fetch -q /var/tmp/example-versions.git '+refs/tags/*:refs/tags/*'; "
          f"rm -rf /var/tmp/example-versions.git; chown -R {DEPLOY_USER}:{DEPLOY_USER} {ORIGIN}",
          container=container)
    refs = dexec("sh", "-ec", f"for ref in main $({git} tag); do echo \"$ref $({git} rev-parse \"$ref^{{commit}}\")\"; done",
                 container=container).stdout.decode().split("\n")
    return dict(line.split() for line in refs if line.strip())


def start_acme() -> None:
    """Pebble beside the demo server; every name resolves to the demo server."""
    if container_state(ACME) != "running":
        if container_state(ACME) is not None:
            run(["docker", "rm", "-f", ACME], capture=True)
        say(f"starting the demo's ACME server {ACME} (Pebble)")
        run_host(ACME, NETWORK, ACME, "--label", f"{PROJECT}.demo=1")
    server_ip = container_ip(CONTAINER)
    rc = ansible_playbook("scripts/demo_acme.yml", "-i", f"{ACME},", "-c", "community.docker.docker",
                          "-e", json.dumps({"pebble_edge_ip": server_ip}))
    if rc != 0:
        raise TestbedError("setting up the demo's ACME server (Pebble) failed")
    cert = run(["docker", "exec", ACME, "cat", "/etc/pebble/cert.pem"], capture=True).stdout.decode()
    dexec("mkdir", "-p", "/etc/ssl/shipshape-demo")
    dexec("sh", "-c", "cat > /etc/ssl/shipshape-demo/acme-server.pem", input_text=cert)


def fetch_acme_root() -> Path:
    """Pebble's root certificate (it changes whenever Pebble starts)."""
    root = run(["docker", "exec", ACME, "curl", "-s", "--cacert", "/etc/pebble/cert.pem",
                "https://localhost:15000/roots/0"], capture=True).stdout.decode()
    if "BEGIN CERTIFICATE" not in root:
        raise TestbedError("the demo ACME server did not hand out its root certificate")
    ACME_ROOT.write_text(root)
    return ACME_ROOT


def ansible_playbook(*args: str) -> int:
    beside = Path(sys.executable).parent / "ansible-playbook"
    exe = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if exe is None:
        raise TestbedError("ansible-playbook not found; run `make venv` (or `make demo`) first")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"))
    env["PATH"] = f"{Path(exe).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([exe, *args], cwd=REPO_ROOT, env=env, check=False).returncode


def up(args) -> int:
    if not docker_answers():
        die("no Docker engine answers; run scripts/ensure_docker.py (or `make demo`)")
    try:
        generate_key()
        prepare_vault()
        register_secrets()
        start_server()
        provision_login()
        wait_for_ssh()
        if not args.no_deploy:
            ship_images()
            put_repository()
            start_acme()
            fetch_acme_root()  # the post-deploy checks of site.yml verify the certificate with it
            validate()
    except TestbedError as exc:
        die(f"the demo stopped: {exc}")
    say(f"demo server is up; SSH: ssh -i {KEY.relative_to(REPO_ROOT)} -p {SSH_PORT} "
        f"-o UserKnownHostsFile={KNOWN_HOSTS.relative_to(REPO_ROOT)} {DEPLOY_USER}@127.0.0.1")
    if args.no_deploy:
        return 0
    try:
        rc = ansible_playbook("site.yml", "-i", "inventories/local",
                              "--vault-password-file", str(VAULT_PASSWORD_FILE), *args.ansible_args)
    except TestbedError as exc:
        die(str(exc))
    if rc != 0:
        die(f"ansible-playbook site.yml failed (exit {rc}); the demo server is still up for a look "
            f"(`make demo-down` removes it)", rc)
    root = ACME_ROOT.relative_to(REPO_ROOT)
    print()
    say("site.yml finished: the example app is served over HTTPS by the demo server")
    say(f"  URL:    https://{DOMAIN}:{HTTPS_PORT}/  (published on 127.0.0.1; the name is the demo's own)")
    say(f"  check:  curl --cacert {root} --resolve {DOMAIN}:{HTTPS_PORT}:127.0.0.1 "
        f"https://{DOMAIN}:{HTTPS_PORT}/health")
    say(f"  admin:  https://{DOMAIN}:{HTTPS_PORT}/admin/  user admin, password: vault_superuser_password in "
        f"ansible-vault view {VAULT.relative_to(REPO_ROOT)} --vault-password-file "
        f"{VAULT_PASSWORD_FILE.relative_to(REPO_ROOT)}")
    say(f"  SSH:    ssh -i .demo/id_ed25519 -p {SSH_PORT} "
        f"-o UserKnownHostsFile=.demo/known_hosts {DEPLOY_USER}@127.0.0.1")
    say("  remove it all: make demo-down")
    return 0


def down(_args) -> int:
    if not docker_answers():
        say("no Docker engine answers; nothing to remove there")
    else:
        for cmd in (["docker", "rm", "-f", "-v", CONTAINER],
                    ["docker", "rm", "-f", "-v", ACME],
                    ["docker", "volume", "rm", "-f", DOCKER_VOLUME],
                    ["docker", "network", "rm", NETWORK]):
            subprocess.run(cmd, capture_output=True, check=False)
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    VAULT.unlink(missing_ok=True)  # generated by `up`; useless without the password in .demo/
    say("demo removed (containers, volume, network, generated key, vault and its password)")
    return 0


def versions(_args) -> int:
    if container_state() != "running":
        die("the demo server does not run; `make demo` first")
    try:
        found = add_versions()
    except TestbedError as exc:
        die(str(exc))
    for ref, commit in found.items():
        print(f"{ref:16} {commit}")
    say("deploy one: ansible-playbook playbooks/deploy.yml -i inventories/local "
        f"--vault-password-file {VAULT_PASSWORD_FILE.relative_to(REPO_ROOT)} -e app_version=v2")
    return 0


def status(_args) -> int:
    state = container_state() if docker_answers() else None
    say(f"demo server {CONTAINER}: {state or 'absent'}")
    return 0 if state == "running" else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the demo server and deploy to it")
    p_up.add_argument("--no-deploy", action="store_true", help="start the server only")
    p_up.add_argument("ansible_args", nargs="*", help="extra ansible-playbook arguments (after --)")
    p_up.set_defaults(func=up)
    sub.add_parser("down", help="remove everything the demo made").set_defaults(func=down)
    sub.add_parser("versions", help="add the example app's later versions (tags v1, v2, v3 ...) to the demo "
                   "server's repository, to try deploy.yml and rollback.yml").set_defaults(func=versions)
    sub.add_parser("status", help="show whether the demo server runs").set_defaults(func=status)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
