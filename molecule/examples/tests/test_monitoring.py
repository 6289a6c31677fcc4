"""The monitoring role on the model server's host (examples-web): Prometheus scrapes the node
exporter and probes the site over HTTPS, no monitoring port answers from outside, and an alert
reaches the receiver on examples-acme when the site goes down, then its resolution when it is
back; a planted backup metrics file that is too old alerts too, and so does a planted container
whose health check fails. The times are printed.

Every test takes testinfra's `host` (a parameter of the module), so pytest keeps them in file order.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import testlib  # noqa: E402

SERVER = "examples-web"
ACME = "examples-acme"
SITE = "model.example.test"
testinfra_hosts = [f"ansible://{SERVER}"]

PORTS = {"prometheus": 9090, "alertmanager": 9093, "alertmanager cluster": 9094, "node exporter": 9100,
         "blackbox exporter": 9115}
ALERTS_LOG = "/var/log/alerts.jsonl"
BACKUP_METRICS = "/var/lib/prometheus/node-exporter/shipshape_backup.prom"


def prometheus(host, path: str, query: str = "") -> dict:
    data = f"-G --data-urlencode 'query={query}' " if query else ""
    return json.loads(host.check_output(f"curl -sf {data}'http://127.0.0.1:9090{path}'"))


def say(request, line: str) -> None:
    """Print a line to the terminal while pytest captures the output (the measured times)."""
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(line, flush=True)


def received() -> list[dict]:
    """What the receiver got so far: (time, status, alert name, labels) of each alert."""
    out = testlib.docker_exec(ACME, "sh", "-c", f"cat {ALERTS_LOG} 2>/dev/null || true").stdout
    alerts = []
    for line in out.splitlines():
        entry = json.loads(line)
        for alert in entry["body"].get("alerts", []):
            alerts.append({"time": entry["received"], "status": alert["status"],
                           "name": alert["labels"]["alertname"], "labels": alert["labels"],
                           "summary": alert["annotations"].get("summary", "")})
    return alerts


def wait_for(predicate, timeout: float, what: str) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [a for a in received() if predicate(a)]
        if found:
            return found[0]
        time.sleep(2)
    raise AssertionError(f"no {what} within {timeout:.0f} s; received: {received()}")


def test_prometheus_scrapes_the_server_and_probes_the_site(host):
    deadline = time.time() + 90
    while True:
        targets = prometheus(host, "/api/v1/targets")["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if set(health.values()) == {"up"} or time.time() > deadline:
            break
        time.sleep(3)
    assert health == {"node": "up", f"site {SITE}": "up"}, targets
    probe = prometheus(host, "/api/v1/query", f'probe_success{{site="{SITE}"}}')["data"]["result"]
    assert [r["value"][1] for r in probe] == ["1"], probe
    expiry = prometheus(host, "/api/v1/query", "probe_ssl_earliest_cert_expiry")["data"]["result"]
    assert len(expiry) == 1 and float(expiry[0]["value"][1]) > time.time()


def test_no_monitoring_port_answers_from_outside(host):
    listening = host.check_output("ss -ltnH").splitlines()
    ip = testlib.container_ip(SERVER)
    for name, port in PORTS.items():
        bound = [line.split()[3] for line in listening if line.split()[3].endswith(f":{port}")]
        assert all(address.startswith("127.0.0.1:") for address in bound), (name, bound)
        with socket.socket() as sock:
            sock.settimeout(3)
            assert sock.connect_ex((ip, port)) != 0, f"{name} ({port}) answers from outside"


def test_a_site_that_goes_down_alerts_and_its_return_resolves(host, request):
    web = host.check_output("docker ps -q --filter label=com.docker.compose.service=web")
    assert len(web.split()) == 1, web
    # A backup that last succeeded two days ago, as the backup job's metrics file would say.
    host.run(f"printf 'shipshape_backup_last_success_timestamp_seconds %d\\nshipshape_backup_last_run_success 1\\n' "
             f"$(( $(date +%s) - 172800 )) > {BACKUP_METRICS}.tmp && mv {BACKUP_METRICS}.tmp {BACKUP_METRICS}")
    # A container whose health check always fails (the base image is on the server).
    host.check_output("docker run -d --name sick-canary --health-cmd false --health-interval 2s --health-retries 1 "
                      "shipshape/base:debian13 sleep 3600")
    stopped = time.time()
    host.check_output(f"docker stop {web}")
    try:
        down = wait_for(lambda a: a["name"] == "SiteDown" and a["status"] == "firing" and a["labels"].get("site") == SITE,
                        240, "SiteDown alert")
    finally:
        host.check_output(f"docker start {web}")
    started = time.time()
    say(request, f"\nSiteDown reached the receiver {down['time'] - stopped:.0f} s after the app stopped: {down['summary']}")
    assert down["time"] - stopped < 180, "the default rules must alert within 3 minutes"
    backup = wait_for(lambda a: a["name"] == "BackupTooOld" and a["status"] == "firing", 60, "BackupTooOld alert")
    say(request, f"BackupTooOld: {backup['summary']}")
    sick = wait_for(lambda a: a["name"] == "ContainerUnhealthy" and a["labels"].get("name") == "sick-canary", 120,
                    "ContainerUnhealthy alert")
    say(request, f"ContainerUnhealthy: {sick['summary']}")
    host.run("docker rm -f sick-canary")
    resolved = wait_for(lambda a: a["name"] == "SiteDown" and a["status"] == "resolved", 180, "resolution of SiteDown")
    say(request, f"SiteDown resolved at the receiver {resolved['time'] - started:.0f} s after the app started again")
    host.run(f"rm -f {BACKUP_METRICS}")
