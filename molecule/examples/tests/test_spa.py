"""The Flask API and its single-page frontend (examples/flask-spa) deployed by the app role
behind the tls role's HTTPS edge: nginx serves the frontend's files from the release and hands
/api/ to the app. Probed from outside: HTTPS from the controller, and a real browser (Chromium
on examples-acme, trusting Pebble's root) that runs the page's script against the API.

Runs after converge and idempotence; the tests build on each other in file order:
v1 serves -> v2 (a new stylesheet) switches the files and the API at once -> a release whose
image has no frontend is refused -> maintenance mode on and off -> a rollback brings v1's
files back.Every test takes testinfra's `host` (a parameter of the module), so pytest keeps them in file order.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import testlib  # noqa: E402
from tlsprobe import https  # noqa: E402

SERVER = "examples-spa"
ACME = "examples-acme"
NAME = "spa.example.test"
testinfra_hosts = [f"ansible://{SERVER}"]

REPO = Path(__file__).resolve().parents[3]
CACHE = REPO / ".cache/molecule/examples"
# The browser's screenshots, kept with the scenario's output.
SHOTS = CACHE / "screenshots"
APP_ROOT = "/srv/spa"
STATIC_ROOT = "/var/www/shipshape/spa"
NSSDB = "sql:/root/.pki/nssdb"


@pytest.fixture(scope="module")
def spa_ip() -> str:
    return testlib.container_ip(SERVER)


@pytest.fixture(scope="module")
def browser(spa_ip):
    """Chromium on examples-acme, with Pebble's current root in its certificate store and
    the app's name resolved to its server; returns run(path, *flags) -> stdout."""
    setup = testlib.docker_exec(ACME, "sh", "-c", f"""set -e
        mkdir -p /root/.pki/nssdb
        [ -f /root/.pki/nssdb/cert9.db ] || certutil -d {NSSDB} -N --empty-password
        curl -sfk https://127.0.0.1:15000/roots/0 > /tmp/pebble-root.pem
        certutil -d {NSSDB} -D -n pebble-root 2>/dev/null || true
        certutil -d {NSSDB} -A -t C,, -n pebble-root -i /tmp/pebble-root.pem""")
    assert setup.returncode == 0, setup.stderr

    def run(path: str, *flags: str) -> str:
        proc = testlib.docker_exec(
            ACME, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--host-resolver-rules=MAP {NAME} {spa_ip}", "--virtual-time-budget=10000",
            "--window-size=1024,768", *flags, f"https://{NAME}{path}", timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout + proc.stderr

    return run


def get(spa_ip, cafile, path: str) -> tuple[int, dict, bytes]:
    return https(spa_ip, NAME, cafile, path)


def commit_of(tag: str) -> str:
    return subprocess.run(["git", "-C", str(CACHE / "spa.git"), "rev-parse", f"{tag}^{{commit}}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def assets(html: bytes) -> list[str]:
    return sorted(re.findall(r'(?:src|href)="(/assets/[^"]+)"', html.decode()))


def current_id(host) -> str:
    return host.check_output(f"readlink -f {APP_ROOT}/current").rsplit("/", 1)[-1]


def web_container(host) -> str:
    return host.check_output("docker ps -q --filter label=com.docker.compose.service=web")


def state(host) -> dict:
    """What a refused deploy must leave exactly as it was."""
    return {
        "current": current_id(host),
        "releases": host.run(f"ls -1 {APP_ROOT}/releases").stdout,
        "static": host.run(f"ls -1 {STATIC_ROOT}").stdout,
        "locations": host.file("/etc/nginx/conf.d/shipshape-app.locations").content_string,
        "container": web_container(host),
    }


def flat(output: str) -> str:
    return " ".join(output.split())


# ------------------------------------------------------------------ v1 serves

def test_nginx_serves_the_frontend_from_the_release(host, spa_ip, cafile):
    status, headers, body = get(spa_ip, cafile, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert headers["cache-control"] == "no-cache"
    assert "strict-transport-security" in headers  # the edge's security headers stay
    files = assets(body)
    assert any(re.fullmatch(r"/assets/app\.[0-9a-f]{10}\.js", f) for f in files), files
    static = f"{STATIC_ROOT}/{current_id(host)}"
    assert body == host.file(f"{static}/index.html").content
    for path in files:
        status, headers, content = get(spa_ip, cafile, path)
        assert status == 200, path
        assert headers["cache-control"] == "public, max-age=31536000, immutable"
        assert content == host.file(f"{static}{path}").content
    # Readable by nginx, writable by root only; not in the private app root.
    directory = host.file(static)
    assert (directory.user, directory.mode) == ("root", 0o755)
    # The app saw none of these requests: its log has only /api/ paths.
    log = host.check_output(f"docker logs {web_container(host)} 2>&1")
    assert "GET /assets/" not in log and '"GET / ' not in log


def test_a_route_of_the_frontend_gets_its_page(host, spa_ip, cafile):
    assert get(spa_ip, cafile, "/about")[2] == get(spa_ip, cafile, "/")[2]
    # A hashed asset that does not exist is a 404, not the page.
    assert get(spa_ip, cafile, "/assets/app.0123456789.js")[0] == 404


def test_the_api_answers_under_its_path(host, spa_ip, cafile):
    status, headers, body = get(spa_ip, cafile, "/api/health")
    assert status == 200 and json.loads(body)["version"] == commit_of("v1")
    status, _, body = get(spa_ip, cafile, "/api/items")
    assert status == 200 and len(json.loads(body)) >= 3


def test_a_browser_shows_the_data_the_page_fetched_from_the_api(host, spa_ip, cafile, browser):
    items = json.loads(get(spa_ip, cafile, "/api/items")[2])
    dom = browser("/", "--dump-dom")
    for item in items:
        assert f"<li>{item['title']}</li>" in dom, dom[-2000:]
    assert f'<p id="api-version">API version {commit_of("v1")}</p>' in dom, dom[-2000:]
    assert 'id="error"' not in dom
    about = browser("/about", "--dump-dom")
    assert "<h1>About</h1>" in about and "production" in about, about[-2000:]
    # The screenshot, kept with the scenario's output.
    output = browser("/", "--screenshot=/root/spa-home.png")
    assert "written to file /root/spa-home.png" in output, output[-2000:]
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "spa-home.png"
    subprocess.run(["docker", "cp", f"{ACME}:/root/spa-home.png", str(shot)], check=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, len(data)


# ------------------------------------------------------------------ a new version, a refused one, a rollback

def test_a_new_version_switches_the_files_and_the_api_together(host, spa_ip, cafile, browser):
    old = assets(get(spa_ip, cafile, "/")[2])
    run = testlib.run_playbook("converge.yml", {"app_version": "v2"}, "--limit", SERVER)
    assert run.returncode == 0, run.stdout[-3000:]
    new = assets(get(spa_ip, cafile, "/")[2])
    changed = sorted(set(new) - set(old))
    assert len(changed) == 1 and "/style." in changed[0], (old, new)
    assert get(spa_ip, cafile, changed[0])[0] == 200
    assert json.loads(get(spa_ip, cafile, "/api/health")[2])["version"] == commit_of("v2")
    assert f"API version {commit_of('v2')}" in browser("/", "--dump-dom")
    # Both releases' files are on the server (a rollback needs the old ones).
    assert len(host.check_output(f"ls -1 {STATIC_ROOT}").split()) == 2


def test_an_image_without_the_frontend_is_refused_before_the_switch(host, spa_ip, cafile):
    before = state(host)
    page = get(spa_ip, cafile, "/")[2]
    run = testlib.run_playbook("converge.yml", {
        "app_version": "v2", "app_static": {"path": "/app/no-such-dir", "app_paths": ["/api/"]}}, "--limit", SERVER)
    assert run.returncode != 0
    text = flat(run.stdout)
    assert 'failed at "Copy the frontend\'s files out of the release\'s image"' in text, run.stdout[-3000:]
    assert "has no /app/no-such-dir (app_static.path)" in text, run.stdout[-3000:]
    assert state(host) == before
    assert get(spa_ip, cafile, "/")[2] == page


def test_maintenance_mode_answers_every_request_with_its_page_while_the_app_runs(host, spa_ip, cafile):
    container = web_container(host)
    run = testlib.run_playbook(REPO / "playbooks/maintenance.yml", {"maintenance": "on"}, "--limit", SERVER)
    assert run.returncode == 0, run.stdout[-3000:]
    try:
        for path in ("/", "/about", "/api/health"):
            status, headers, body = get(spa_ip, cafile, path)
            assert (status, headers.get("retry-after")) == (503, "300"), (path, status, headers)
            assert b"Down for maintenance" in body and headers["cache-control"] == "no-store"
            assert "strict-transport-security" in headers
        assert web_container(host) == container  # the app kept running
        again = testlib.run_playbook(REPO / "playbooks/maintenance.yml", {"maintenance": "on"}, "--limit", SERVER)
        assert testlib.recap(again.stdout)[SERVER]["changed"] == 0
    finally:
        off = testlib.run_playbook(REPO / "playbooks/maintenance.yml", {"maintenance": "off"}, "--limit", SERVER)
    assert off.returncode == 0, off.stdout[-3000:]
    assert get(spa_ip, cafile, "/api/health")[0] == 200
    refused = testlib.run_playbook(REPO / "playbooks/maintenance.yml", {"maintenance": "maybe"}, "--limit", SERVER)
    assert refused.returncode != 0 and "-e maintenance=on or -e maintenance=off" in flat(refused.stdout)


def test_a_rollback_brings_back_the_previous_files(host, spa_ip, cafile):
    run = testlib.run_playbook(REPO / "playbooks/rollback.yml", None, "--limit", SERVER)
    assert run.returncode == 0, run.stdout[-3000:]
    assert json.loads(get(spa_ip, cafile, "/api/health")[2])["version"] == commit_of("v1")
    page = get(spa_ip, cafile, "/")[2]
    assert page == host.file(f"{STATIC_ROOT}/{current_id(host)}/index.html").content
    for path in assets(page):
        assert get(spa_ip, cafile, path)[0] == 200
