"""Tests of the test-bed scripts: mirror discovery, image recipes, and their failure paths.

The failure paths run the real scripts as a real unprivileged user or against a real
(unreachable) mirror; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import build_images  # noqa: E402
import testbed_common  # noqa: E402


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ------------------------------------------------------------------ mirror discovery

def test_mirror_from_deb822_sources_skips_third_party_and_disabled(tmp_path):
    write(tmp_path / "etc/apt/sources.list.d/debian.sources", """\
Types: deb
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
""")
    write(tmp_path / "etc/apt/sources.list.d/vendor.sources", """\
Types: deb
URIs: https://vendor.example.com/apt
Suites: nodistro
Components: main
""")
    write(tmp_path / "etc/apt/sources.list.d/old.sources", """\
Enabled: no
Types: deb
URIs: http://disabled.example.net/debian
Suites: bookworm
""")
    archive, security = testbed_common.debian_mirrors(str(tmp_path))
    assert archive == "http://mirror.example.org/debian"
    assert security == "http://security.example.org/debian-security"


def test_mirror_from_one_line_sources_list_with_options(tmp_path):
    write(tmp_path / "etc/apt/sources.list", """\
# a comment
deb-src http://src.example.org/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://one.example.org/debian/ trixie main
deb http://one.example.org/debian-security trixie-security main
deb https://cloud.example.com/apt cloud-sdk-bookworm main
""")
    archive, security = testbed_common.debian_mirrors(str(tmp_path))
    assert archive == "http://one.example.org/debian"
    assert security == "http://one.example.org/debian-security"


def test_no_debian_source_is_a_clear_error(tmp_path):
    write(tmp_path / "etc/apt/sources.list", "deb https://vendor.example.com/apt nodistro main\n")
    with pytest.raises(testbed_common.TestbedError, match="--mirror"):
        testbed_common.debian_mirrors(str(tmp_path))


def test_this_machine_has_a_debian_mirror():
    archive, _ = testbed_common.debian_mirrors()
    assert archive.startswith(("http://", "https://", "file:"))


# ------------------------------------------------------------------ recipes and tags

def test_recipe_hash_is_stable_and_changes_with_the_recipe():
    a = build_images.recipe("debian13", "http://m.example/debian", None)
    b = build_images.recipe("debian13", "http://m.example/debian", None)
    assert build_images.recipe_hash(a) == build_images.recipe_hash(b)
    other_mirror = build_images.recipe("debian13", "http://n.example/debian", None)
    assert build_images.recipe_hash(other_mirror) != build_images.recipe_hash(a)
    more = dict(a, packages=[*a["packages"], "vim"])
    assert build_images.recipe_hash(more) != build_images.recipe_hash(a)


def test_tags_name_the_release_and_the_recipe():
    rec = build_images.recipe("debian12", "http://m.example/debian", None)
    hashed, alias = build_images.tags_for("debian12", rec)
    assert alias == "shipshape/host:debian12"
    assert hashed == f"shipshape/host:debian12-{build_images.recipe_hash(rec)}"


def test_host_images_carry_what_ansible_and_the_tests_need():
    rec = build_images.recipe("debian13", "http://m.example/debian", None)
    for pkg in ("python3", "systemd", "sudo", "openssh-server"):
        assert pkg in rec["packages"]
    assert "systemd-modules-load.service" in rec["post"]
    assert "Suites: trixie trixie-updates" in rec["sources"]


# ------------------------------------------------------------------ failure paths

def _nobody_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    return env


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None
                    or not Path("/usr/bin/python3").exists(),
                    reason="needs root to run the script as an unprivileged user")
def test_no_engine_and_not_root_stops_with_advice_and_installs_nothing():
    before = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\n"], capture_output=True,
                            text=True, check=True).stdout
    # A copy the unprivileged user can read, run by the system Python it can execute.
    workdir = Path(tempfile.mkdtemp(prefix="shipshape-test-"))
    try:
        workdir.chmod(0o755)
        for name in ("ensure_docker.py", "testbed_common.py"):
            shutil.copy(REPO / "scripts" / name, workdir / name)
            (workdir / name).chmod(0o644)
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "/usr/bin/python3", str(workdir / "ensure_docker.py")],
            capture_output=True, text=True, env=_nobody_env(), timeout=60, check=False,
            cwd="/")
    finally:
        shutil.rmtree(workdir)
    assert proc.returncode != 0
    assert "not root" in proc.stderr
    assert "docker.io" in proc.stderr and "docker info" in proc.stderr
    after = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\n"], capture_output=True,
                           text=True, check=True).stdout
    assert before == after


def test_no_install_mode_only_reports(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts/ensure_docker.py"), "--no-install"],
                          capture_output=True, text=True, env=_nobody_env(), timeout=60, check=False)
    assert proc.returncode == 1
    assert "no Docker engine answers" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("debootstrap") is None,
                    reason="needs root and debootstrap")
def test_debootstrap_failure_names_the_step_and_tags_nothing():
    mirror = "http://127.0.0.1:9/debian"  # nothing listens on the discard port
    rec = build_images.recipe("debian12", mirror, None)
    hashed, _ = build_images.tags_for("debian12", rec)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/build_images.py"), "debian12", "--no-pull",
         "--mirror", mirror],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1
    assert "step debootstrap" in proc.stderr
    assert "nothing was tagged" in proc.stderr
    assert not testbed_common.image_exists(hashed)
    # The cached image of the real recipe is untouched.
    assert testbed_common.image_exists("shipshape/host:debian12")


def test_build_images_is_a_no_op_when_recipes_are_unchanged():
    proc = subprocess.run([sys.executable, str(REPO / "scripts/build_images.py")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("up to date") == len(build_images.IMAGES)
    assert "built" not in proc.stdout.replace("(recipe unchanged)", "")


@pytest.mark.parametrize("script", ["ensure_docker.py", "build_images.py", "demo.py",
                                    "run_scenarios.py", "check_log_secrets.py", "role_docs.py",
                                    "loadgen.py", "bench_release.py", "bench_tasks.py",
                                    "bench_connection.py", "machine_speed.py"])
def test_every_script_has_help(script):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0
    assert "usage:" in proc.stdout


def test_machine_speed_prints_both_figures():
    proc = subprocess.run([sys.executable, str(REPO / "scripts/machine_speed.py"), "--json"],
                          capture_output=True, text=True, timeout=120, check=True)
    figures = json.loads(proc.stdout)
    assert set(figures) == {"python_ms", "spawn_ms"}
    # Plausible for any machine that runs this suite: above zero, below ten seconds.
    assert 0 < figures["python_ms"] < 10_000 and 0 < figures["spawn_ms"] < 10_000, figures


# ------------------------------------------------------------------ the bytecode cache

# Run inside a host image: imports the same module from two AnsiballZ-like archives at
# different paths, then a changed source, as root and as an unprivileged user.
CACHE_PROBE = r'''
import json, os, subprocess, sys, traceback, zipfile

CACHE = "/var/cache/shipshape-ansiballz"

def archive(directory, source):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "ansible_probe_payload.zip")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("probe_mod.py", source)
    return path

def entries():
    return len(os.listdir(CACHE)) if os.path.isdir(CACHE) else 0

RUN = """
import sys, traceback
sys.path.insert(0, sys.argv[1])
import probe_mod
try:
    probe_mod.fail()
except RuntimeError:
    frames = traceback.extract_tb(sys.exc_info()[2])
print(probe_mod.VALUE, frames[-1].filename)
"""
SOURCE = "VALUE = %d\ndef fail():\n    def inner():\n        raise RuntimeError('x')\n    inner()\n"

def run(path, user=None):
    cmd = [sys.executable, "-c", RUN, path]
    if user:
        cmd = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), out[1]

result = {"before": entries()}
first = archive("/tmp/a", SOURCE % 1)
result["first"] = run(first)
result["after_first"] = entries()
second = archive("/tmp/b", SOURCE % 1)
result["second"] = run(second)
result["after_second"] = entries()
changed = archive("/tmp/c", SOURCE % 2)
result["changed"] = run(changed)
result["after_changed"] = entries()
os.chmod("/tmp/c", 0o755)
os.chmod(changed, 0o644)
result["unprivileged"] = run(changed, user="65534")
result["after_unprivileged"] = entries()
result["mode"] = oct(os.stat(CACHE).st_mode & 0o777)
print(json.dumps(result))
'''


def test_host_images_cache_the_compiled_module_code_correctly():
    """The cache compiles each source once, never serves stale code, names the run's archive
    in tracebacks, and is root's alone."""
    import json
    name = f"{testbed_common.PROJECT}-cache-probe-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--entrypoint", "sleep",
                    f"{testbed_common.PROJECT}/host:debian13", "600"],
                   check=True, capture_output=True, timeout=60)
    try:
        proc = subprocess.run(["docker", "exec", "-i", name, "python3", "-"], input=CACHE_PROBE,
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["before"] == 0
    assert result["first"] == [1, "/tmp/a/ansible_probe_payload.zip/probe_mod.py"]
    assert result["after_first"] == 1
    # Same source from another archive: served from the cache, traceback names /tmp/b.
    assert result["second"] == [1, "/tmp/b/ansible_probe_payload.zip/probe_mod.py"]
    assert result["after_second"] == 1
    # A changed source is compiled anew: the new value, not the cached one.
    assert result["changed"] == [2, "/tmp/c/ansible_probe_payload.zip/probe_mod.py"]
    assert result["after_changed"] == 2
    # An unprivileged import works and neither reads nor writes root's cache.
    assert result["unprivileged"] == [2, "/tmp/c/ansible_probe_payload.zip/probe_mod.py"]
    assert result["after_unprivileged"] == 2
    assert result["mode"] == "0o700"
