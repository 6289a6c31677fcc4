#!/usr/bin/env python3
"""What visitors see during a redeploy: ours (playbooks/deploy.yml) against a plain
`docker compose up -d` recreate of the same change, both under constant HTTPS load.

Drives the demo (scripts/demo.py: a Debian 13 server with the whole site, reached over SSH,
and Pebble), with the example app's tags v1, v2 and unhealthy added to its repository (`demo.py
versions`). Starting from v1 serving, each round:

  1. deploy.yml to v2 under load        (ours: v2's image is removed first, so the deploy builds
                                          it on the server - from Docker's layer cache, as after a
                                          small commit; the new release starts in the idle slot
                                          and gets the traffic once healthy)
  2. deploy.yml of v2 again              (nothing new: the time of a no-op deploy, changed=0)
  3. rollback.yml back to v1 under load  (the previous release's stopped slot starts again)
  4. deploy.yml of `unhealthy` under load (its /health answers 503: refused at the health gate,
                                          v1 keeps serving; the playbook fails, as it must)
  5. the same change the plain way: on the server, in the live release's directory
     (/srv/example/current), .compose.env set to v2's image and `docker compose up -d` of the
     live slot's project (example-a or example-b) under load, then back to v1 the same way
     (unmeasured)

The load is LOADGEN's: RATE requests per second, each on a new TLS connection, to /health
over HTTPS with the certificate verified. It prints, per method, the failed requests, the
latency percentiles, the time the change took and how long after its start the new version
first answered a visitor (medians over the rounds).

  bench_release.py                  a fresh demo (demo.py down, then up), 3 rounds
  bench_release.py --reuse          the demo that runs (`make demo`)
  bench_release.py --rounds 1 --rate 50 --keep

The playbooks reach the server at its address on the demo network (where the load goes too).
Needs what `make demo` needs: the virtualenv, a Docker engine and the test-bed images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import demo  # noqa: E402
from loadgen import Load, describe  # noqa: E402

SERVER = demo.CONTAINER
NAME = demo.DOMAIN
LOG_DIR = REPO / ".cache" / "bench"
BIN = Path(sys.executable).parent


def env() -> dict:
    return dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PY_COLORS="0", NO_COLOR="1",
                ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def demo_cmd(command: str, log: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts/demo.py"), command], cwd=REPO, env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    log.write_text(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"bench_release: `demo.py {command}` failed; see {log}")


def server_ip() -> str:
    return demo.container_ip()


def playbook(name: str, extra: dict, log: Path, fails: bool = False) -> float:
    # At the server's address HTTPS is on 443 (demo.py publishes it on 127.0.0.1:8443).
    extra = {"ansible_host": server_ip(), "ansible_port": 22, "verify_https_port": 443, **extra}
    start = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "inventories/local", "--vault-password-file",
                           str(demo.VAULT_PASSWORD_FILE), str(REPO / "playbooks" / name), "-e", json.dumps(extra)],
                          cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    took = time.monotonic() - start
    log.write_text(proc.stdout)
    if (proc.returncode != 0) != fails:
        sys.exit(f"bench_release: {name} {'passed' if fails else 'failed'}; see {log}")
    return took


def changed_on_server(log: Path) -> int:
    """The changed count of the server in a playbook's PLAY RECAP lines (summed over plays)."""
    total = 0
    for line in log.read_text().splitlines():
        if line.startswith("demo "):  # the server's name in inventories/local
            total += int(line.split("changed=")[1].split()[0]) if "changed=" in line else 0
    return total


def on_server(script: str) -> float:
    start = time.monotonic()
    proc = subprocess.run(["docker", "exec", SERVER, "bash", "-ec", script], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        sys.exit(f"bench_release: on the server: {script}\n{proc.stdout}{proc.stderr}")
    return time.monotonic() - start


# The live slot: the one of /srv/example/slots/{a,b} that points at the release `current`
# points at. Sets $slot (a or b) and $port (its APP_PORT, from slots/$slot.env).
LIVE_SLOT = (
    "live=$(readlink -f /srv/example/current); slot=; "
    "for s in a b; do [ \"$(readlink -f /srv/example/slots/$s)\" = \"$live\" ] && slot=$s; done; "
    "[ -n \"$slot\" ] || { echo \"no slot runs the live release $live\" >&2; exit 1; }; "
    "port=$(sed -n 's/^APP_PORT=//p' /srv/example/slots/$slot.env); "
)


def plain_recreate(to: str) -> float:
    """`docker compose up -d` of the live slot's project with TO's image, as a hand deploy does:
    in the live release's directory, .compose.env set to TO's image, then
    `docker compose -p example-SLOT --env-file .compose.env --env-file /srv/example/slots/SLOT.env up -d`."""
    return on_server(
        LIVE_SLOT
        + "cd /srv/example/current && "
        f"sed -i -e \"s/^APP_IMAGE='\\\\?\\([^:']*\\):.*/APP_IMAGE='\\1:{to}'/\" -e \"s/^APP_VERSION=.*/APP_VERSION='{to}'/\" .compose.env && "
        "docker compose -p \"example-$slot\" --env-file .compose.env --env-file \"/srv/example/slots/$slot.env\" "
        "up -d web >/dev/null 2>&1")


def reached(summary: dict, version: str, what: str) -> None:
    """The change really happened: the last version visitors saw is the target."""
    if not summary["versions"] or summary["versions"][-1] != version:
        sys.exit(f"bench_release: after {what} visitors still saw {summary['versions']}, not {version}")


def under_load(action, rate: float, settle: float = 3.0) -> tuple:
    load = Load(server_ip(), NAME, str(demo.ACME_ROOT), "/health", rate=rate).start()
    time.sleep(settle)
    took = action()
    time.sleep(settle)
    summary = load.stop()
    # Seconds from the start of the action to the first visitor answer of the last version.
    last = summary["versions"][-1] if summary["versions"] else None
    summary["switch_s"] = round(max(0.0, summary["first_seen"].get(last, settle) - settle), 1)
    return took, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    parser.add_argument("--reuse", action="store_true", help="use the demo that runs (`make demo`)")
    parser.add_argument("--keep", action="store_true", help="leave the demo up")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    if not args.reuse:
        print("[bench] a fresh demo: demo.py down, then up (site.yml)", flush=True)
        demo_cmd("down", LOG_DIR / "release-down.log")
        demo_cmd("up", LOG_DIR / "release-up.log")
    elif demo.container_state() != "running":
        sys.exit("bench_release: no demo runs; `make demo` first, or run without --reuse")
    refs = demo.add_versions()
    v1, v2 = refs["v1"], refs["v2"]
    try:
        demo.trust_network_address()
    except demo.TestbedError as exc:
        sys.exit(f"bench_release: {exc}")
    rows = {"ours: deploy.yml": [], "ours: rollback.yml": [], "ours: unhealthy refused": [],
            "plain: docker compose up -d": []}
    noop = []
    try:
        # From v1 serving, whatever state --reuse found.
        playbook("deploy.yml", {"app_version": "v1"}, LOG_DIR / "release-start.log")
        for n in range(1, args.rounds + 1):
            # A build on the server each round: v2's image goes (the idle slot's stopped v2
            # containers, if any, are recreated by the deploy anyway).
            on_server(f"docker image rm -f example-web:{v2} >/dev/null")
            took, s = under_load(lambda: playbook("deploy.yml", {"app_version": "v2"},
                                                  LOG_DIR / f"release-deploy-{n}.log"), args.rate)
            reached(s, v2, "deploy.yml")
            rows["ours: deploy.yml"].append((took, s))
            print(f"[bench] round {n} deploy.yml v1 -> v2: {took:.1f} s, v2 answered after {s['switch_s']} s; "
                  f"{describe(s)}", flush=True)
            log = LOG_DIR / f"release-noop-{n}.log"
            took = playbook("deploy.yml", {"app_version": "v2"}, log)
            noop.append((took, changed_on_server(log)))
            print(f"[bench] round {n} deploy.yml v2 again (nothing new): {took:.1f} s, "
                  f"changed={noop[-1][1]}", flush=True)
            # Forced: with --reuse the database may have migrations of later tags (v3), which
            # v1 and v2 do not know; the schema check is not measured here.
            took, s = under_load(lambda: playbook("rollback.yml", {"app_rollback_force": True},
                                                  LOG_DIR / f"release-rollback-{n}.log"), args.rate)
            reached(s, v1, "rollback.yml")
            rows["ours: rollback.yml"].append((took, s))
            print(f"[bench] round {n} rollback.yml v2 -> v1: {took:.1f} s, v1 answered after {s['switch_s']} s; "
                  f"{describe(s)}", flush=True)
            took, s = under_load(lambda: playbook("deploy.yml", {"app_version": "unhealthy"},
                                                  LOG_DIR / f"release-unhealthy-{n}.log", fails=True), args.rate)
            reached(s, v1, "the refused deploy of unhealthy")
            rows["ours: unhealthy refused"].append((took, s))
            print(f"[bench] round {n} deploy.yml of unhealthy (refused): {took:.1f} s; {describe(s)}", flush=True)
            took, s = under_load(lambda: plain_recreate(v2), args.rate, settle=8.0)
            reached(s, v2, "docker compose up -d")
            rows["plain: docker compose up -d"].append((took, s))
            print(f"[bench] round {n} plain recreate v1 -> v2: {took:.1f} s, v2 answered after {s['switch_s']} s; "
                  f"{describe(s)}", flush=True)
            plain_recreate(v1)
            on_server(LIVE_SLOT + "for i in $(seq 90); do curl -fsS \"http://127.0.0.1:$port/health\" >/dev/null 2>&1 "
                      "&& exit 0; sleep 1; done; exit 1")
    finally:
        if not args.keep and not args.reuse:
            demo_cmd("down", LOG_DIR / "release-down-last.log")
    print()
    print(f"Redeploy under {args.rate:g} requests/s over HTTPS ({args.rounds} round(s), medians; "
          f"{os.cpu_count()} CPUs; logs in {LOG_DIR.relative_to(REPO)}/)")
    print(f"  {'method':30} {'failed':>8} {'of':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'time s':>8} "
          f"{'new in s':>8}")
    med = {}
    for method, results in rows.items():
        failed = statistics.median(s["failed"] for _, s in results)
        med[method] = failed
        print(f"  {method:30} {failed:8g} {statistics.median(s['requests'] for _, s in results):6g} "
              f"{statistics.median(s['p50_ms'] for _, s in results):8.1f} "
              f"{statistics.median(s['p95_ms'] for _, s in results):8.1f} "
              f"{statistics.median(s['p99_ms'] for _, s in results):8.1f} "
              f"{statistics.median(t for t, _ in results):8.1f} "
              f"{statistics.median(s['switch_s'] for _, s in results):8.1f}")
    print("  (time: the whole playbook for ours, from start to finish; for the plain way, `docker compose up -d`;")
    print("   new in: from the start to the first visitor answer of the new version; for the refused")
    print("   deploy, of the version that kept serving)")
    print(f"  deploy.yml of the live version (nothing new): {statistics.median(t for t, _ in noop):.1f} s, "
          f"changed={max(c for _, c in noop)} (median time, largest changed count)")
    failed = [med[m] for m in ("ours: deploy.yml", "ours: rollback.yml", "ours: unhealthy refused")]
    return 0 if not any(failed) and max(c for _, c in noop) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
