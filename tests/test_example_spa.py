"""The API + single-page frontend example (examples/flask-spa).

Its build_frontend.py (standard library only) is run here directly: the same sources give the
same bytes, assets get content-hashed names and index.html loads exactly those. The image is
built from shipshape/base:debian13 (tagged by a hash of its build context, as
examples/images.py does, so an unchanged image is not built again) and run as compose.yaml
runs it, read-only and published on 127.0.0.1; the API is then asked over HTTP as nginx and
a browser on another origin would. Every container the tests start is removed at the end;
the image stays cached.
"""

from __future__ import annotations

import hashlib
import html.parser
import importlib.util
import http.client
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
APP_DIR = REPO / "examples/flask-spa"
sys.path.insert(0, str(REPO / "examples"))

import images  # noqa: E402
from test_example_app import wait_for  # noqa: E402

spec = importlib.util.spec_from_file_location("app_manifest", REPO / "roles/app/filter_plugins/app_manifest.py")
app_manifest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app_manifest)

BASE = "shipshape/base:debian13"
BUILD = APP_DIR / "build_frontend.py"
MANIFEST = yaml.safe_load((APP_DIR / "shipshape.yml").read_text())
ALLOWED_ORIGIN = "https://app.example.test"
API_BASE = "https://api.example.test"
BUILD_VERSION = "build-0123456789"
RUN_VERSION = "0123456789abcdef0123456789abcdef01234567"


def build_frontend(out: Path, *args: str, src: Path = APP_DIR / "frontend") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILD), str(src), str(out), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Tags(html.parser.HTMLParser):
    """The start tags of a page as (tag, attributes), and the text inside each <script>."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.scripts, self._in_script = [], [], False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data

    def meta(self, name: str) -> str:
        return next(attrs["content"] for tag, attrs in self.tags if tag == "meta" and attrs.get("name") == name)

    def asset_refs(self) -> list[str]:
        return sorted(attrs.get("src") or attrs.get("href") for tag, attrs in self.tags if tag in ("script", "link"))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("spa") / "dist"
    proc = build_frontend(out)
    assert proc.returncode == 0, proc.stderr
    return out


# ------------------------------------------------------------------ build_frontend.py

def test_the_build_is_deterministic(built, tmp_path):
    assert build_frontend(tmp_path / "again").returncode == 0
    assert tree(tmp_path / "again") == tree(built)
    # A second build into the same directory leaves the same files.
    assert build_frontend(built).returncode == 0 and tree(built) == tree(tmp_path / "again")


def test_assets_are_named_by_their_content(built):
    assets = sorted((built / "assets").iterdir())
    assert [re.sub(r"\.[0-9a-f]{10}\.", ".", p.name) for p in assets] == ["app.js", "style.css"]
    for path in assets:
        source = APP_DIR / "frontend" / re.sub(r"\.[0-9a-f]{10}\.", ".", path.name)
        assert path.read_bytes() == source.read_bytes()
        assert path.name.split(".")[1] == hashlib.sha256(source.read_bytes()).hexdigest()[:10]


def test_index_html_loads_exactly_the_hashed_assets(built):
    page = Tags((built / "index.html").read_text())
    assert page.asset_refs() == sorted(f"/assets/{p.name}" for p in (built / "assets").iterdir())
    assert page.meta("api-base") == ""
    assert "__API_BASE__" not in (built / "index.html").read_text()


def test_a_changed_asset_gets_a_new_name_and_the_old_one_goes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("index.html", "app.js", "style.css"):
        (src / name).write_bytes((APP_DIR / "frontend" / name).read_bytes())
    assert build_frontend(tmp_path / "dist", src=src).returncode == 0
    before = sorted(p.name for p in (tmp_path / "dist/assets").iterdir())
    (src / "style.css").write_text("body { color: red; }\n")
    assert build_frontend(tmp_path / "dist", src=src).returncode == 0
    after = sorted(p.name for p in (tmp_path / "dist/assets").iterdir())
    assert after[0] == before[0] and after[1] != before[1]
    assert Tags((tmp_path / "dist/index.html").read_text()).asset_refs() == [f"/assets/{name}" for name in after]


def test_the_api_base_is_injected_html_escaped(tmp_path):
    url = 'https://api.example.test/a&b"<c>/'
    proc = build_frontend(tmp_path, "--api-base", url)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "index.html").read_text()
    assert '<meta name="api-base" content="https://api.example.test/a&amp;b&quot;&lt;c&gt;">' in text
    assert Tags(text).meta("api-base") == url.rstrip("/")


def test_an_api_base_that_is_not_an_http_url_is_refused(tmp_path):
    proc = build_frontend(tmp_path, "--api-base", "javascript:alert(1)")
    assert proc.returncode == 1 and "--api-base must be an http(s) URL" in proc.stderr
    assert not (tmp_path / "index.html").exists()


@pytest.mark.parametrize("missing", ["index.html", "app.js", "style.css"])
def test_a_missing_source_file_is_refused_by_name(tmp_path, missing):
    src = tmp_path / "src"
    src.mkdir()
    for name in {"index.html", "app.js", "style.css"} - {missing}:
        (src / name).write_bytes((APP_DIR / "frontend" / name).read_bytes())
    proc = build_frontend(tmp_path / "dist", src=src)
    assert proc.returncode == 1
    assert proc.stderr == f"build_frontend.py: missing source file {src / missing}\n"
    assert not (tmp_path / "dist").exists()


@pytest.mark.parametrize("page", ["frontend/index.html", "built"])
def test_no_inline_script_so_csp_script_src_self_holds(built, page):
    text = (built / "index.html" if page == "built" else APP_DIR / page).read_text()
    parsed = Tags(text)
    scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
    assert scripts and all(attrs.get("src") for attrs in scripts)
    assert all(body.strip() == "" for body in parsed.scripts)
    assert not [name for _tag, attrs in parsed.tags for name in attrs if name.startswith("on")]
    assert "javascript:" not in text


def test_the_frontend_calls_the_api_under_its_base():
    app_js = (APP_DIR / "frontend/app.js").read_text()
    for token in ('meta[name="api-base"]', "fetch(`${apiBase}/api/${path}`)", "history.pushState(",
                  '"popstate"', '"/about"', 'id: "items"', 'id: "api-version"', 'id: "error"'):
        assert token in app_js
    # Text goes in as text: nothing the API answers is parsed as HTML.
    assert "innerHTML" not in app_js


# ------------------------------------------------------------------ manifest and compose

def test_the_manifest_serves_the_frontend_from_the_image():
    assert MANIFEST["static"] == {"path": "/app/dist", "app_paths": ["/api/"]}
    assert MANIFEST["web"] == {"service": "web", "health_path": "/api/health"}
    assert MANIFEST["preset"] == "none" and MANIFEST["stateful"] == {"files": []}
    assert MANIFEST["compose_files"] == ["compose.yaml"]


def test_the_manifest_keeps_the_contract():
    result = app_manifest.app_manifest((APP_DIR / "shipshape.yml").read_text())
    assert result["errors"] == [] and result["manifest"] == MANIFEST


def test_compose_publishes_on_loopback_only_and_runs_read_only():
    compose = yaml.safe_load((APP_DIR / "compose.yaml").read_text())
    assert compose["name"] == "flask-spa" and set(compose["services"]) == {"web"}
    assert "networks" not in compose
    web = compose["services"]["web"]
    assert web["ports"] == ["127.0.0.1:${APP_PORT:-8000}:8000"]
    assert web["read_only"] is True and web["tmpfs"] == ["/tmp"] and web["cap_drop"] == ["ALL"]
    assert web["security_opt"] == ["no-new-privileges:true"]
    assert web["image"] == "${APP_IMAGE:-flask-spa:latest}"
    assert web["build"]["args"]["API_BASE_URL"] == "${API_BASE_URL:-}"
    assert web["environment"] == {"APP_VERSION": "${APP_VERSION:-}"} and web["env_file"] == ".env"
    assert f"127.0.0.1:8000{MANIFEST['web']['health_path']}" in web["healthcheck"]["test"][-1]


def test_env_example_requires_no_key():
    lines = (APP_DIR / ".env.example").read_text().splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == []
    assert {"# CORS_ORIGINS=", "# APP_ENVIRONMENT=production"} <= set(lines)


def test_the_build_output_stays_out_of_git_and_of_the_image():
    assert {"dist/", ".env", "__pycache__/"} <= set((APP_DIR / ".gitignore").read_text().split())
    assert {"dist", ".env"} <= set((APP_DIR / ".dockerignore").read_text().split())


# ------------------------------------------------------------------ the image, run

def docker(*args: str, check: bool = False, timeout: int = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


class Api:
    """The container's API, asked over HTTP on its published loopback port."""

    def __init__(self, name: str, port: int):
        self.name, self.port = name, port

    def request(self, method: str, path: str, headers: dict[str, str] | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()




@pytest.fixture(scope="module")
def image() -> str:
    if docker("image", "inspect", BASE).returncode != 0:
        pytest.fail(f"{BASE} is missing: build it with `make images` (scripts/build_images.py)")
    args = {"BASE_IMAGE": BASE, "APP_VERSION": BUILD_VERSION, "API_BASE_URL": API_BASE}
    tag = f"shipshape/example-spa:{images.context_hash(APP_DIR, images.base_image_id(BASE), args)}"
    if docker("image", "inspect", tag).returncode != 0:
        build_args = [arg for key, value in args.items() for arg in ("--build-arg", f"{key}={value}")]
        docker("build", "--pull=false", "-t", tag, *build_args, str(APP_DIR), check=True, timeout=900)
    return tag


@pytest.fixture(scope="module")
def container(image, request):
    name = f"spa-test-{secrets.token_hex(4)}"
    request.addfinalizer(lambda: docker("rm", "-f", name))
    # As compose.yaml runs it: read-only, no capabilities, published on loopback only.
    docker("run", "-d", "--name", name, "--health-interval", "1s", "--read-only", "--tmpfs", "/tmp",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "-p", "127.0.0.1::8000",
           "-e", f"CORS_ORIGINS={ALLOWED_ORIGIN}, https://other.example.test", "-e", f"APP_VERSION={RUN_VERSION}",
           image, check=True)
    ports = docker("port", name, "8000/tcp", check=True).stdout.split()
    api = Api(name, int(ports[0].rsplit(":", 1)[1]))
    wait_for(lambda: api.request("GET", "/api/health")[0] == 200, 60, "gunicorn to answer")
    wait_for(lambda: docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip() == "healthy",
             60, "the image's health check to pass")
    return api


def test_health_reports_the_version_and_is_not_cached(container):
    status, headers, body = container.request("GET", "/api/health")
    assert (status, json.loads(body)) == (200, {"status": "ok", "version": RUN_VERSION})
    assert headers["cache-control"] == "no-store" and headers["content-type"] == "application/json"


def test_without_app_version_the_baked_version_is_reported(image):
    code = "from api.app import app; print(app.test_client().get('/api/health').get_data(as_text=True))"
    proc = docker("run", "--rm", "--read-only", image, "python3", "-c", code, check=True)
    assert json.loads(proc.stdout) == {"status": "ok", "version": BUILD_VERSION}


def test_items_and_info(container):
    status, _headers, body = container.request("GET", "/api/items")
    items = json.loads(body)
    assert status == 200 and 3 <= len(items) <= 4
    assert items[0] == {"id": 1, "title": "Deploy without downtime"}
    status, _headers, body = container.request("GET", "/api/info")
    assert (status, json.loads(body)) == (200, {"name": "flask-spa", "version": RUN_VERSION,
                                                "environment": "production"})


def test_an_unknown_api_path_is_a_json_404(container):
    status, headers, body = container.request("GET", "/api/nothing-here")
    assert (status, headers["content-type"], json.loads(body)) == (404, "application/json", {"error": "Not Found"})


def test_cors_answers_an_allowed_origin_only(container):
    status, headers, _body = container.request("GET", "/api/items", {"Origin": ALLOWED_ORIGIN})
    assert status == 200 and headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "Origin" in headers["vary"]
    for origin in ("https://evil.example.test", "https://app.example.test.evil.test", None):
        status, headers, _body = container.request("GET", "/api/items", {"Origin": origin} if origin else {})
        assert status == 200 and not [k for k in headers if k.startswith("access-control-")], origin


def test_a_preflight_from_an_allowed_origin_gets_204(container):
    for path in ("/api/items", "/api/anything"):
        status, headers, body = container.request("OPTIONS", path, {
            "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "content-type"})
        assert (status, body) == (204, b"")
        assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert headers["access-control-allow-methods"] == "GET, OPTIONS"
        assert headers["access-control-allow-headers"] == "Content-Type"
        assert headers["access-control-max-age"] == "600"
    status, headers, _body = container.request("OPTIONS", "/api/items", {
        "Origin": "https://evil.example.test", "Access-Control-Request-Method": "GET"})
    assert status != 204 and not [k for k in headers if k.startswith("access-control-")]


def test_the_image_holds_the_built_frontend(image):
    assets = docker("run", "--rm", image, "ls", "/app/dist/assets", check=True).stdout.split()
    assert len(assets) == 2 and all(re.fullmatch(r"(app|style)\.[0-9a-f]{10}\.(js|css)", name) for name in assets)
    page = Tags(docker("run", "--rm", image, "cat", "/app/dist/index.html", check=True).stdout)
    assert page.asset_refs() == sorted(f"/assets/{name}" for name in assets)
    assert page.meta("api-base") == API_BASE
    assert docker("run", "--rm", image, "cat", "/app/VERSION", check=True).stdout == f"{BUILD_VERSION}\n"


def test_the_app_runs_as_uid_10001(container):
    assert docker("exec", container.name, "id", "-u", check=True).stdout.strip() == "10001"
    assert docker("inspect", "-f", "{{.Config.User}}", container.name, check=True).stdout.strip() == "app"
    # The code is root's: the app user cannot change it.
    assert docker("exec", container.name, "sh", "-c", "test -w /app/api/app.py || test -w /app/dist/index.html"
                  ).returncode == 1
