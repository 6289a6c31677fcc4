#!/usr/bin/env python3
"""Build the container images the test scenarios and the demo use.

The host images are systemd "servers" (python3, systemd, sudo, openssh-server) of a
Debian release; the base image is a plain Debian for application images. Where a registry answers, the stock Debian image is pulled and the recipe is
applied on top; otherwise the root file system is made with debootstrap from this
machine's configured Debian mirror and imported with `docker import`.

Every image is tagged NAME:RELEASE-<hash of its recipe> and NAME:RELEASE. An image whose
recipe hash is already present is not rebuilt. Nothing is tagged unless the whole build
succeeded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testbed_common import (  # noqa: E402
    PROJECT, TestbedError, debian_mirrors, die, docker_answers, image_exists, run, say,
)

# Bump when the build method changes in a way the recipe dict does not show.
RECIPE_VERSION = 1

HOST_PACKAGES = [
    "python3", "python3-apt", "systemd", "systemd-sysv", "dbus", "sudo",
    "openssh-server", "iproute2", "procps", "ca-certificates", "curl", "gnupg",
]

# Shell run inside the new root file system (chroot or docker build), as root.
POST_SCRIPT = r"""
set -eu
# Units that cannot work in a container and would leave systemd "degraded".
for unit in systemd-modules-load.service systemd-remount-fs.service \
            sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
            getty@tty1.service serial-getty@ttyS0.service console-getty.service \
            systemd-firstboot.service; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done
# Each container gets its own machine id and SSH host keys at first boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_*
cat > /etc/systemd/system/ssh-host-keys.service <<'UNIT'
[Unit]
Description=Generate SSH host keys on first boot
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/ssh-host-keys.service \
       /etc/systemd/system/multi-user.target.wants/ssh-host-keys.service
systemctl enable ssh.service >/dev/null 2>&1 || true
# Like a cloud image: no root password; tests and the demo log in with keys only.
passwd -l root >/dev/null
# Test bed only: a bytecode cache for the module code Ansible sends (see the module's text).
site_dir=$(python3 -c 'import sys; print("/usr/local/lib/python3.%d/dist-packages" % sys.version_info[1])')
mkdir -p "$site_dir"
cat > "$site_dir/shipshape_ansiballz_cache.py" <<'PYTHON'
@ANSIBALLZ_CACHE@PYTHON
echo "import shipshape_ansiballz_cache" > "$site_dir/shipshape_ansiballz_cache.pth"
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/* /var/log/*.log
"""

# The module the host images carry (scripts/image_files/); a change to it rebuilds them.
ANSIBALLZ_CACHE = Path(__file__).resolve().parent / "image_files" / "shipshape_ansiballz_cache.py"
POST_SCRIPT = POST_SCRIPT.replace("@ANSIBALLZ_CACHE@", ANSIBALLZ_CACHE.read_text())

# A plain base for application images (the example app, a local Postgres): no systemd.
BASE_POST_SCRIPT = r"""
set -eu
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/* /var/log/*.log
"""

# name -> (repository, tag, release, packages, post script, command)
IMAGES = {
    "debian13": (f"{PROJECT}/host", "debian13", "trixie", HOST_PACKAGES, POST_SCRIPT,
                 "/lib/systemd/systemd"),
    "debian12": (f"{PROJECT}/host", "debian12", "bookworm", HOST_PACKAGES, POST_SCRIPT,
                 "/lib/systemd/systemd"),
    "base-debian13": (f"{PROJECT}/base", "debian13", "trixie", ["ca-certificates"],
                      BASE_POST_SCRIPT, "/bin/bash"),
}


def sources_text(release: str, mirror: str, security: str | None) -> str:
    text = (f"Types: deb\nURIs: {mirror}\nSuites: {release} {release}-updates\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    if security:
        text += (f"\nTypes: deb\nURIs: {security}\nSuites: {release}-security\n"
                 "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    return text


def recipe(key: str, mirror: str, security: str | None) -> dict:
    repo, _tag, release, packages, post, command = IMAGES[key]
    return {
        "version": RECIPE_VERSION,
        "repository": repo,
        "release": release,
        "packages": packages,
        "post": post,
        "command": command,
        "sources": sources_text(release, mirror, security),
    }


def recipe_hash(rec: dict) -> str:
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:12]


def tags_for(key: str, rec: dict) -> tuple:
    repo, tag = IMAGES[key][0], IMAGES[key][1]
    return f"{repo}:{tag}-{recipe_hash(rec)}", f"{repo}:{tag}"


def try_pull(release: str) -> bool:
    try:
        proc = subprocess.run(["docker", "pull", "-q", f"debian:{release}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def build_from_stock(rec: dict, tag: str) -> None:
    """Apply the recipe on the stock Debian image with docker build."""
    with tempfile.TemporaryDirectory(prefix=f"{PROJECT}-build-") as ctx:
        Path(ctx, "post.sh").write_text(rec["post"])
        Path(ctx, "debian.sources").write_text(rec["sources"])
        Path(ctx, "Dockerfile").write_text(
            f"FROM debian:{rec['release']}\n"
            "ENV container=docker\n"
            "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
            f"--no-install-recommends {' '.join(rec['packages'])}\n"
            "COPY post.sh /tmp/post.sh\n"
            "RUN sh /tmp/post.sh && rm -f /tmp/post.sh\n"
            f'CMD ["{rec["command"]}"]\n')
        run(["docker", "build", "-q", "-t", tag, ctx], capture=True)


def build_with_debootstrap(rec: dict, tag: str, mirror: str) -> None:
    if shutil.which("debootstrap") is None:
        raise TestbedError("step debootstrap: debootstrap is not installed "
                           "(Debian: apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix=f"{PROJECT}-rootfs-") as tmp:
        root = Path(tmp, "root")
        log = Path(tmp, "debootstrap.log")
        with open(log, "wb") as out:
            proc = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={','.join(rec['packages'])}",
                 rec["release"], str(root), mirror],
                stdout=out, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-8:]
            raise TestbedError(f"step debootstrap ({rec['release']} from {mirror}) failed "
                               f"with exit {proc.returncode}:\n  " + "\n  ".join(tail))
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(rec["sources"])
        (root / "tmp/post.sh").write_text(rec["post"])
        try:
            run(["chroot", str(root), "/bin/sh", "/tmp/post.sh"], capture=True)
        except TestbedError as exc:
            raise TestbedError(f"step post-install script in chroot failed: {exc}") from exc
        (root / "tmp/post.sh").unlink(missing_ok=True)
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."],
                               stdout=subprocess.PIPE)
        imp = subprocess.run(
            ["docker", "import",
             "--change", "ENV container=docker",
             "--change", f'CMD ["{rec["command"]}"]',
             "--change", f"LABEL org.{PROJECT}.recipe={tag.split(':')[1]}",
             "-", tag],
            stdin=tar.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        tar.stdout.close()
        tar_rc = tar.wait()
        if tar_rc != 0 or imp.returncode != 0:
            subprocess.run(["docker", "rmi", "-f", tag], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
            raise TestbedError(f"step docker import failed (tar exit {tar_rc}, import exit "
                               f"{imp.returncode}): {imp.stderr.decode(errors='replace').strip()}")


def ensure_image(key: str, mirror: str, security: str | None, force: bool, allow_pull: bool) -> str:
    rec = recipe(key, mirror, security)
    hashed, alias = tags_for(key, rec)
    if image_exists(hashed) and not force:
        say(f"{hashed}: up to date (recipe unchanged)")
    else:
        if force:
            subprocess.run(["docker", "rmi", "-f", hashed], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        if allow_pull and try_pull(rec["release"]):
            say(f"{hashed}: building from the stock debian:{rec['release']} image")
            build_from_stock(rec, hashed)
        else:
            say(f"{hashed}: no registry; debootstrap {rec['release']} from {mirror}")
            build_with_debootstrap(rec, hashed, mirror)
        say(f"{hashed}: built")
    run(["docker", "tag", hashed, alias])
    remove_stale_tags(hashed)
    return alias


def remove_stale_tags(current: str) -> None:
    """Untag images built from older recipes of the same image (REPO:TAG-<other hash>)."""
    repo, tag = current.rsplit(":", 1)
    prefix = tag.rsplit("-", 1)[0] + "-"
    listing = run(["docker", "images", repo, "--format", "{{.Repository}}:{{.Tag}}"],
                  capture=True).stdout.decode().split()
    for ref in listing:
        other = ref.rsplit(":", 1)[1]
        if ref != current and other.startswith(prefix) and len(other) == len(tag):
            subprocess.run(["docker", "rmi", ref], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", choices=[[], *IMAGES], default=[],
                        metavar="IMAGE", help=f"which images (default: all of {', '.join(IMAGES)})")
    parser.add_argument("--mirror", help="Debian mirror URL (default: read from this machine's apt "
                                         "configuration)")
    parser.add_argument("--security-mirror", help="Debian security mirror URL (default: read "
                                                  "from apt configuration)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--no-pull", action="store_true",
                        help="do not try the stock image from a registry; always debootstrap")
    parser.add_argument("--print-tags", action="store_true",
                        help="print the tags the current recipes give and exit")
    args = parser.parse_args(argv)
    keys = args.images or list(IMAGES)

    try:
        if args.mirror:
            mirror, security = args.mirror, args.security_mirror
        else:
            mirror, security = debian_mirrors()
            security = args.security_mirror or security
    except TestbedError as exc:
        die(str(exc))

    if args.print_tags:
        for key in keys:
            print(tags_for(key, recipe(key, mirror, security))[0])
        return 0
    if not docker_answers():
        die("no Docker engine answers; run scripts/ensure_docker.py first")
    if os.geteuid() != 0:
        die("building images with debootstrap needs root (chroot); run as root")

    failures = []
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        futures = {key: pool.submit(ensure_image, key, mirror, security, args.force,
                                    not args.no_pull) for key in keys}
        for key, fut in futures.items():
            try:
                fut.result()
            except TestbedError as exc:
                failures.append(f"{key}: {exc}")
    if failures:
        die("image build failed; nothing was tagged for the failed images:\n" + "\n".join(failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
