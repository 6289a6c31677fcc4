"""The example app and its database image, run for real on the local Docker engine.

Builds both images from shipshape/base:debian13 (cached by content hash, see
examples/images.py), starts the database and the web app on a private network with the web
port published on 127.0.0.1 only, and talks to them over HTTP as nginx and a browser would.
Everything the tests start is removed at the end; the images stay cached.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
sys.path.insert(0, str(EXAMPLES))

import images  # noqa: E402

BASE = "shipshape/base:debian13"


def docker(*args: str, check: bool = False, timeout: int = 120, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=kw.pop("text", True),
                          timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def cookies(self) -> dict[str, str]:
        jar = {}
        for key, value in self.headers:
            if key.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                jar[name.strip()] = rest.split(";", 1)[0]
        return jar

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Stack:
    """A db container and a web container on their own network, plus a named volume for the data."""

    def __init__(self, tags: dict[str, str]):
        self.tags = tags
        suffix = secrets.token_hex(4)
        self.network = f"shipshape-exampletest-{suffix}"
        self.volume = f"shipshape-exampletest-{suffix}-db-data"
        self.db = f"shipshape-exampletest-{suffix}-db"
        self.web = f"shipshape-exampletest-{suffix}-web"
        self.containers = [self.db, self.web]
        self.version = "0123456789abcdef0123456789abcdef01234567"
        self.api_token = secrets.token_urlsafe(24)
        self.db_env = {"POSTGRES_USER": "notes", "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
                       "POSTGRES_DB": "notes_db"}
        self.web_env = {
            **self.db_env,
            "POSTGRES_HOST": "db",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "APP_VERSION": self.version,
            "API_TOKEN": self.api_token,
        }

    @staticmethod
    def env_args(env: dict[str, str]) -> list[str]:
        return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]

    def start_db(self, name: str | None = None, volume: str | None = None) -> str:
        name = name or self.db
        if name not in self.containers:
            self.containers.append(name)
        docker("run", "-d", "--name", name, "--health-interval", "1s", "--network", self.network, "--network-alias",
               "db" if name == self.db else name, "-v", f"{volume or self.volume}:/var/lib/postgresql/data",
               *self.env_args(self.db_env), self.tags["db"], check=True)
        self.wait_healthy(name, 60)
        return name

    def start_web(self):
        # As compose.yaml runs it: read-only, no capabilities, published on loopback only.
        docker("run", "-d", "--name", self.web, "--health-interval", "2s", "--read-only", "--tmpfs", "/tmp",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", self.network,
               "-p", "127.0.0.1::8000",
               *self.env_args(self.web_env), self.tags["web"], check=True)
        wait_for(lambda: self.port() and self.get("/health").status in (200, 503), 60, "gunicorn to answer")

    def wait_healthy(self, name: str, timeout: float):
        wait_for(lambda: docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip() == "healthy",
                 timeout, f"{name} to be healthy")

    def port(self) -> int | None:
        out = docker("port", self.web, "8000/tcp").stdout.strip().splitlines()
        return int(out[0].rsplit(":", 1)[1]) if out else None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port()}"

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port(), timeout=15)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, resp.getheaders(), resp.read())
        finally:
            conn.close()

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def post_note(self, title, body="", token: str | None = "default") -> Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-Api-Token"] = self.api_token if token == "default" else token
        return self.request("POST", "/api/notes", json.dumps({"title": title, "body": body}), headers)

    def exec_web(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return docker("exec", *self.env_args(env or {}), self.web, *argv)

    def psql(self, sql: str, container: str | None = None) -> str:
        proc = docker("exec", container or self.db, "psql", "-U", self.db_env["POSTGRES_USER"], "-d",
                      self.db_env["POSTGRES_DB"], "-v", "ON_ERROR_STOP=1", "-Atc", sql, check=True)
        return proc.stdout.strip()

    def remove(self):
        for name in self.containers:
            docker("rm", "-f", "-v", name)
        docker("volume", "rm", "-f", self.volume)
        docker("network", "rm", self.network)


@pytest.fixture(scope="module")
def tags():
    if docker("image", "inspect", BASE).returncode != 0:
        pytest.fail(f"{BASE} is missing: build it with `make images` (scripts/build_images.py)")
    return images.build(base=BASE, log=lambda message: None)


@pytest.fixture(scope="module")
def stack(tags, request):
    s = Stack(tags)
    request.addfinalizer(s.remove)
    docker("network", "create", s.network, check=True)
    docker("volume", "create", s.volume, check=True)
    s.start_db()
    s.start_web()
    migrate = s.exec_web("python3", "manage.py", "migrate", "--noinput")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    wait_for(lambda: s.get("/health").status == 200, 30, "/health to answer 200")
    return s


# ------------------------------------------------------------------ images and the helper

def test_images_cli_prints_the_cached_tags(tags):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(EXAMPLES / "images.py"), "--base", BASE],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"web={tags['web']}", f"db={tags['db']}"]
    assert "cached" in proc.stderr and "built" not in proc.stderr
    assert time.monotonic() - start < 30
    help_ = subprocess.run([sys.executable, str(EXAMPLES / "images.py"), "--help"],
                           capture_output=True, text=True, check=False)
    assert help_.returncode == 0 and "--base" in help_.stdout


def test_images_cli_fails_clearly_on_a_missing_base():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "images.py"), "--base",
                           "shipshape/no-such-base:never", "--print-only"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert "shipshape/no-such-base:never" in proc.stderr and "Traceback" not in proc.stderr


def test_context_hash_follows_content_and_dockerignore(tmp_path):
    (tmp_path / ".dockerignore").write_text(".env\n**/__pycache__\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    first = images.context_hash(tmp_path, "sha256:base", {"BASE_IMAGE": "b"})
    (tmp_path / ".env").write_text("SECRET_KEY=x\n")
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"\0")
    assert images.context_hash(tmp_path, "sha256:base", {"BASE_IMAGE": "b"}) == first
    assert ".env" not in images.context_files(tmp_path)
    (tmp_path / "app.py").write_text("print(2)\n")
    second = images.context_hash(tmp_path, "sha256:base", {"BASE_IMAGE": "b"})
    assert second != first
    assert images.context_hash(tmp_path, "sha256:other", {"BASE_IMAGE": "b"}) != second
    (tmp_path / "app.py").chmod(0o755)
    assert images.context_hash(tmp_path, "sha256:base", {"BASE_IMAGE": "b"}) != second


def test_version_comes_from_the_env_else_from_the_build(tags):
    baked = images.build(base=BASE, app_version="v-baked-1", only=["web"], log=lambda message: None)["web"]
    assert baked != tags["web"]
    code = "import django; django.setup(); from exampleapp.health import app_version; print(app_version())"
    key = ["-e", "SECRET_KEY=" + secrets.token_urlsafe(40)]
    assert docker("run", "--rm", *key, baked, "python3", "-c", code).stdout.strip() == "v-baked-1"
    assert docker("run", "--rm", *key, "-e", "APP_VERSION=", baked, "python3", "-c", code).stdout.strip() == "v-baked-1"
    assert docker("run", "--rm", *key, "-e", "APP_VERSION=abc", baked, "python3", "-c", code).stdout.strip() == "abc"
    assert docker("run", "--rm", *key, tags["web"], "python3", "-c", code).stdout.strip() == "unknown"


def test_app_refuses_a_placeholder_secret_key(tags):
    proc = docker("run", "--rm", "-e", "SECRET_KEY=CHANGE_ME", tags["web"], "python3", "manage.py", "check")
    assert proc.returncode != 0
    assert "SECRET_KEY is empty or a placeholder" in proc.stderr


def test_db_image_refuses_to_initialise_without_a_password(tags):
    proc = docker("run", "--rm", "-e", "POSTGRES_USER=x", tags["db"], timeout=60)
    assert proc.returncode == 1
    assert "POSTGRES_PASSWORD is not set" in proc.stderr


APP_DIR = EXAMPLES / "django-app"


def compose(name: str) -> dict:
    import yaml

    return yaml.safe_load((APP_DIR / name).read_text())


def test_compose_files_keep_the_contract():
    app, data = compose("compose.yaml"), compose("compose.db.yaml")
    assert set(app["services"]) == {"web", "worker"} and set(data["services"]) == {"db"}
    web, db, worker = app["services"]["web"], data["services"]["db"], app["services"]["worker"]
    # The worker runs the app's image, publishes nothing and has a health check of its own
    # (the image's asks the web server, which a worker does not run).
    assert worker["image"] == web["image"] and "ports" not in worker
    assert worker["command"] == ["python3", "manage.py", "worker"]
    assert "/tmp/heartbeat" in worker["healthcheck"]["test"][-1]
    assert worker["read_only"] is True and worker["cap_drop"] == ["ALL"] and worker["env_file"] == ".env"
    # The app is published on loopback only; the database never.
    assert web["ports"] == ["127.0.0.1:${APP_PORT:-8000}:8000"]
    assert "ports" not in db and "network_mode" not in db
    assert web["image"].startswith("${APP_IMAGE") and db["image"] == "${POSTGRES_IMAGE:-postgres:17}"
    assert web["build"]["args"]["BASE_IMAGE"].startswith("${BASE_IMAGE")
    assert web["environment"]["APP_VERSION"] == "${APP_VERSION:-}"
    # Data in a named volume of the data project; both projects meet on one external network.
    assert db["volumes"] == ["db-data:/var/lib/postgresql/data"] and "db-data" in data["volumes"]
    for project in (app, data):
        assert project["networks"]["backend"] == {"name": "${APP_NETWORK:-example-backend}", "external": True}
    assert web["networks"] == db["networks"] == ["backend"]
    assert web["env_file"] == db["env_file"] == ".env"
    assert "healthcheck" in web and "-h 127.0.0.1" in db["healthcheck"]["test"][1]
    assert web["read_only"] is True and web["cap_drop"] == ["ALL"]


def test_env_example_is_complete_for_a_deploy_check(tags):
    """The app starts on .env.example's keys (placeholders replaced) and `check --deploy` is clean."""
    env = []
    for line in (APP_DIR / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env += ["-e", f"{key}={secrets.token_urlsafe(40) if value == 'CHANGE_ME' else value}"]
    proc = docker("run", "--rm", *env, tags["web"], "python3", "manage.py", "check", "--deploy",
                  "--fail-level", "WARNING")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------ the running app

def test_health_reports_ok_database_and_version(stack):
    resp = stack.get("/health")
    assert resp.status == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["version"] == stack.version
    assert resp.header("Cache-Control") == "no-store"


def test_image_healthcheck_turns_healthy(stack):
    stack.wait_healthy(stack.web, 60)


def test_web_runs_as_non_root_and_cannot_change_its_code(stack):
    proc = stack.exec_web("id", "-u")
    assert proc.stdout.strip() not in ("", "0")
    assert stack.exec_web("stat", "-c", "%U", "/app/manage.py").stdout.strip() == "root"
    assert stack.exec_web("sh", "-c", "touch /app/manage.py").returncode != 0


def test_web_is_published_on_loopback_only(stack):
    lines = docker("port", stack.web).stdout.strip().splitlines()
    assert lines and all(line.startswith("8000/tcp -> 127.0.0.1:") for line in lines), lines
    assert docker("port", stack.db).stdout.strip() == ""


def test_migrate_check_passes_after_migrate(stack):
    check = stack.exec_web("python3", "manage.py", "migrate", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    models = stack.exec_web("python3", "manage.py", "makemigrations", "--check", "--dry-run")
    assert models.returncode == 0, "models changed without a migration: " + models.stdout


def test_health_is_503_while_migrations_are_pending(stack):
    stack.psql("CREATE DATABASE empty_db")
    proc = docker("run", "--rm", "--network", stack.network,
                  *stack.env_args({**stack.web_env, "POSTGRES_DB": "empty_db"}), stack.tags["web"],
                  "python3", "-c",
                  "import django; django.setup(); from exampleapp.health import check; "
                  "import json; print(json.dumps(check()))")
    assert proc.returncode == 0, proc.stderr
    status, body = json.loads(proc.stdout)
    assert status == 503 and body["migrations"] == "pending" and body["database"] == "ok"


def test_notes_api_creates_and_lists(stack):
    created = stack.post_note("first note", "body one")
    assert created.status == 201, created.text
    note = created.json()
    assert note["title"] == "first note" and note["body"] == "body one" and note["id"] > 0
    assert stack.post_note("second note").status == 201
    listed = stack.get("/api/notes")
    assert listed.status == 200
    titles = [n["title"] for n in listed.json()]
    assert titles[-2:] == ["first note", "second note"]
    detail = stack.get(f"/api/notes/{note['id']}")
    assert detail.status == 200 and detail.json() == note
    assert stack.psql("SELECT count(*) FROM notes_note WHERE title = 'first note'") == "1"
    page = stack.get("/")
    assert page.status == 200 and "first note" in page.text and stack.version in page.text


def test_notes_api_rejects_bad_input_and_wrong_token(stack):
    before = stack.psql("SELECT count(*) FROM notes_note")
    assert stack.post_note("x", token=None).status == 401
    assert stack.post_note("x", token="wrong").status == 401
    assert stack.post_note("").status == 400
    assert stack.post_note("t" * 201).status == 400
    bad_json = stack.request("POST", "/api/notes", "{not json",
                             {"X-Api-Token": stack.api_token, "Content-Type": "application/json"})
    assert bad_json.status == 400
    assert stack.request("DELETE", "/api/notes").status == 405
    assert stack.psql("SELECT count(*) FROM notes_note") == before


def test_unknown_host_is_refused_but_health_answers(stack):
    assert stack.get("/api/notes", {"Host": "evil.example"}).status == 400
    assert stack.get("/health", {"Host": "evil.example"}).status == 200


def test_admin_static_files_are_served(stack):
    login = stack.get("/admin/login/")
    css = re.search(r'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', login.text)
    assert css, "the admin page does not link hashed static files"
    resp = stack.get(css.group(1))
    assert resp.status == 200 and resp.header("Content-Type").startswith("text/css")
    assert "max-age=315360000" in (resp.header("Cache-Control") or "")


def test_notes_survive_restarting_the_web_container(stack):
    before = stack.get("/api/notes").json()
    assert before
    docker("restart", "-t", "5", stack.web, check=True)
    wait_for(lambda: stack.get("/health").status == 200, 60, "/health after restart")
    assert stack.get("/api/notes").json() == before


def test_notes_survive_a_new_db_container_on_the_same_volume(stack):
    before = stack.get("/api/notes").json()
    docker("rm", "-f", stack.db, check=True)
    stack.start_db()
    logs = docker("logs", stack.db)
    assert "initialising a new cluster" not in logs.stdout + logs.stderr
    wait_for(lambda: stack.get("/health").status == 200, 30, "/health after the new db container")
    assert stack.get("/api/notes").json() == before


def test_db_requires_the_password_over_the_network(stack):
    code = ("import psycopg2, sys\n"
            "try:\n"
            "    psycopg2.connect(host='db', user=sys.argv[1], password=sys.argv[2], dbname=sys.argv[3],"
            " connect_timeout=5).close()\n"
            "    print('connected')\n"
            "except psycopg2.OperationalError as exc:\n"
            "    print('refused', exc)\n")
    user, db = stack.db_env["POSTGRES_USER"], stack.db_env["POSTGRES_DB"]
    good = stack.exec_web("python3", "-c", code, user, stack.db_env["POSTGRES_PASSWORD"], db)
    assert good.stdout.startswith("connected"), good.stdout + good.stderr
    bad = stack.exec_web("python3", "-c", code, user, "wrong-password", db)
    assert bad.stdout.startswith("refused") and "password authentication failed" in bad.stdout


def test_pg_dump_restores_into_a_fresh_database(stack):
    user, db = stack.db_env["POSTGRES_USER"], stack.db_env["POSTGRES_DB"]
    dump = subprocess.run(["docker", "exec", stack.db, "pg_dump", "-Fc", "-U", user, db],
                          capture_output=True, timeout=60, check=False)
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout.startswith(b"PGDMP")
    fresh = stack.start_db(name=stack.db + "-restore", volume=stack.volume + "-restore")
    try:
        restore = subprocess.run(["docker", "exec", "-i", fresh, "pg_restore", "--no-owner", "-U", user, "-d", db],
                                 input=dump.stdout, capture_output=True, timeout=60, check=False)
        assert restore.returncode == 0, restore.stderr
        query = "SELECT string_agg(title, ',' ORDER BY id) FROM notes_note"
        assert stack.psql(query, container=fresh) == stack.psql(query)
    finally:
        docker("rm", "-f", "-v", fresh)
        docker("volume", "rm", "-f", stack.volume + "-restore")

    # In place, as the README's restore command does: lost rows come back.
    before = stack.get("/api/notes").json()
    stack.psql("DELETE FROM notes_note")
    assert stack.get("/api/notes").json() == []
    restore = subprocess.run(["docker", "exec", "-i", stack.db, "pg_restore", "--clean", "--if-exists",
                              "--no-owner", "-U", user, "-d", db],
                             input=dump.stdout, capture_output=True, timeout=60, check=False)
    assert restore.returncode == 0, restore.stderr
    assert stack.get("/api/notes").json() == before


def admin_login(stack: Stack, username: str, password: str) -> Response:
    """Log in through the admin form as a browser behind nginx's HTTPS would."""
    origin = f"https://{stack.host}"
    proxy = {"Host": stack.host, "X-Forwarded-Proto": "https"}
    form = stack.get("/admin/login/?next=/admin/", proxy)
    assert form.status == 200
    csrf_cookie = form.cookies()["csrftoken"]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": username,
                                   "password": password, "next": "/admin/"})
    return stack.request("POST", "/admin/login/?next=/admin/", body, {
        **proxy, "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf_cookie}",
        "Origin": origin, "Referer": f"{origin}/admin/login/?next=/admin/"})


def test_ensure_superuser_is_idempotent_and_the_admin_login_works(stack):
    password = secrets.token_urlsafe(16)
    env = {"DJANGO_SUPERUSER_USERNAME": "admin", "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
           "DJANGO_SUPERUSER_PASSWORD": password}
    first = stack.exec_web("python3", "manage.py", "ensure_superuser", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "superuser admin created"
    row = "SELECT password, email, is_superuser, is_staff FROM auth_user WHERE username = 'admin'"
    created = stack.psql(row)
    assert created.endswith("|admin@example.com|t|t")

    other = secrets.token_urlsafe(16)
    second = stack.exec_web("python3", "manage.py", "ensure_superuser",
                            env={**env, "DJANGO_SUPERUSER_PASSWORD": other, "DJANGO_SUPERUSER_EMAIL": "x@example.com"})
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "superuser admin exists"
    assert stack.psql(row) == created
    assert stack.psql("SELECT count(*) FROM auth_user") == "1"
    for proc in (first, second):
        assert password not in proc.stdout + proc.stderr and other not in proc.stdout + proc.stderr

    ok = admin_login(stack, "admin", password)
    assert ok.status == 302, ok.text[:2000]
    assert ok.header("Location") == "/admin/"
    session = ok.cookies().get("sessionid")
    assert session
    index = stack.get("/admin/", {"Host": stack.host, "X-Forwarded-Proto": "https", "Cookie": f"sessionid={session}"})
    assert index.status == 200 and "Site administration" in index.text

    for wrong in (other, password + "x"):
        bad = admin_login(stack, "admin", wrong)
        assert bad.status == 200 and "sessionid" not in bad.cookies()
        assert "Please enter the correct username and password" in bad.text


def test_ensure_superuser_names_a_missing_variable(stack):
    proc = stack.exec_web("python3", "manage.py", "ensure_superuser",
                          env={"DJANGO_SUPERUSER_USERNAME": "second-admin"})
    assert proc.returncode == 1
    assert "DJANGO_SUPERUSER_PASSWORD is not set" in proc.stderr
    assert stack.psql("SELECT count(*) FROM auth_user WHERE username = 'second-admin'") == "0"


def test_health_is_503_while_the_db_is_stopped_and_recovers(stack):
    docker("stop", "-t", "10", stack.db, check=True)
    start = time.monotonic()
    resp = stack.get("/health")
    assert resp.status == 503, resp.text
    assert resp.json()["database"] == "unreachable" and resp.json()["version"] == stack.version
    assert time.monotonic() - start < 10
    docker("start", stack.db, check=True)
    wait_for(lambda: stack.get("/health").status == 200, 60, "/health after the db came back")
