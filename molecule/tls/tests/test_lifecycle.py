"""Certificate lifecycle against the live Pebble: renewal, a broken nginx configuration
(deploy hook and play), the upstream left to the app after its first write, a second site with other HSTS and rate-limit settings, changed
names, the expiry check, bad input, a failed request while the ACME server is down, and
check mode on a fresh host.

These run after test_edge.py (pytest runs files in name order) and in this order; the
last one leaves the edge with the certificate names of converge.yml. Stopping Pebble
changes its roots, so the test that does it comes last.
"""

from __future__ import annotations

import base64
import ssl
import time

import pytest
import testlib
from tlsprobe import ACME, EDGE, NAMES, PEBBLE_TLS_CERT, https, issuer_cn, pebble_root_pem, sans, served_cert

testinfra_hosts = [f"ansible://{EDGE}"]
EXTRA = "api.app.example.test"
SECOND = "shop.example.test"
CONVERGE = "converge.yml"
DEPLOY_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/shipshape-reload-nginx"
# nginx.conf includes every conf.d/*.conf: nginx would load this file at its next reload.
BROKEN_CONF = "/etc/nginx/conf.d/zz-planted-broken.conf"
HSTS = "max-age=63072000"
UPSTREAM = "/etc/nginx/conf.d/shipshape-upstream.conf"


def domains(*aliases: str) -> dict:
    return {"tls_domains": [{"name": NAMES[0], "aliases": list(aliases)}]}


def served_until(edge_ip, pebble_root, predicate, timeout=20, name=NAMES[0]):
    """The certificate served for `name` once `predicate` holds for it (reloads take a
    moment; a name nginx does not serve yet is refused until then)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cert = served_cert(edge_ip, name, pebble_root)
        except (ssl.SSLError, OSError):
            if time.monotonic() > deadline:
                raise
        else:
            if predicate(cert) or time.monotonic() > deadline:
                return cert
        time.sleep(1)


def test_forced_renewal_reloads_nginx_with_the_new_certificate(edge_ip, pebble_root):
    before = served_cert(edge_ip, NAMES[0], pebble_root)["serialNumber"]
    proc = testlib.docker_exec(EDGE, "env", f"REQUESTS_CA_BUNDLE={PEBBLE_TLS_CERT}",
                               "certbot", "renew", "--force-renewal", "--no-random-sleep-on-renew")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The deploy hook, not the test, reloaded nginx.
    after = served_until(edge_ip, pebble_root, lambda c: c["serialNumber"] != before)
    assert after["serialNumber"] != before
    assert issuer_cn(after).startswith("Pebble Intermediate CA")
    assert sans(after) == set(NAMES)


def nginx_processes(host) -> tuple[str, list[str]]:
    """The pid of nginx's master and those of its serving workers: a reload replaces the
    workers (the old ones show "worker process is shutting down" until they exit)."""
    master = host.run("systemctl show nginx -p MainPID --value").stdout.strip()
    assert master not in ("", "0"), "nginx is not running"
    workers = host.run(
        f"for d in /proc/[0-9]*; do grep -qs '^PPid:[[:space:]]*{master}$' $d/status"
        " && [ \"$(tr -d '\\000' < $d/cmdline 2>/dev/null)\" = 'nginx: worker process' ]"
        " && echo ${d#/proc/}; done").stdout.split()
    assert workers, f"no worker of nginx master {master}"
    return master, sorted(workers)


@pytest.fixture
def broken_nginx_conf(host):
    """A configuration file with a directive nginx does not know; removed afterwards, when
    `nginx -t` must accept the configuration again."""
    host.run(f"echo 'planted_unknown_directive on;' > {BROKEN_CONF}")
    check = host.run("nginx -t")
    assert check.rc != 0 and BROKEN_CONF in check.stderr, check.stderr
    yield BROKEN_CONF
    host.run(f"rm -f {BROKEN_CONF}")
    check = host.run("nginx -t")
    assert check.rc == 0, check.stderr


def test_deploy_hook_refuses_to_reload_a_broken_configuration(host, edge_ip, pebble_root, broken_nginx_conf):
    before = nginx_processes(host)
    serial = served_cert(edge_ip, NAMES[0], pebble_root)["serialNumber"]
    hook = host.run(DEPLOY_HOOK)
    assert hook.rc != 0
    # It stopped at `nginx -t`, which named the error; systemctl was never asked to reload.
    assert "test failed" in hook.stderr and broken_nginx_conf in hook.stderr, hook.stderr
    assert "nginx.service" not in hook.stdout + hook.stderr
    assert nginx_processes(host) == before
    assert https(edge_ip, NAMES[0], pebble_root, "/")[0] == 200
    assert served_cert(edge_ip, NAMES[0], pebble_root)["serialNumber"] == serial


def test_broken_configuration_fails_the_play_and_nginx_keeps_serving(host, edge_ip, pebble_root,
                                                                     broken_nginx_conf):
    before = nginx_processes(host)
    serial = served_cert(edge_ip, NAMES[0], pebble_root)["serialNumber"]
    try:
        # Another HSTS max-age changes a template, whose handler would reload nginx: the
        # play's `nginx -t` must stop it first.
        proc = testlib.run_playbook(CONVERGE, {"tls_hsts_max_age": 600})
        assert proc.returncode != 0
        assert testlib.recap(proc.stdout)[EDGE]["failed"] == 1
        assert "TASK [tls : Check the whole nginx configuration]" in proc.stdout
        assert "configuration file /etc/nginx/nginx.conf test failed" in proc.stdout, proc.stdout[-3000:]
        assert broken_nginx_conf in proc.stdout
        assert "RUNNING HANDLER [tls : Reload nginx]" not in proc.stdout
        # The running nginx was neither restarted nor reloaded: same master, same workers,
        # the previous headers and the same certificate.
        assert nginx_processes(host) == before
        status, headers, _ = https(edge_ip, NAMES[0], pebble_root, "/")
        assert (status, headers["strict-transport-security"]) == (200, HSTS)
        assert served_cert(edge_ip, NAMES[0], pebble_root)["serialNumber"] == serial
    finally:
        # Without the broken file, a run with the converge settings puts the template back
        # and reloads nginx.
        host.run(f"rm -f {broken_nginx_conf}")
        restore = testlib.run_playbook(CONVERGE, None, "--tags", "tls_nginx")
    assert restore.returncode == 0, restore.stdout[-3000:]
    # The failed run had written the changed template: this run wrote it back and reloaded.
    assert "RUNNING HANDLER [tls : Reload nginx]" in restore.stdout
    assert https(edge_ip, NAMES[0], pebble_root, "/")[1]["strict-transport-security"] == HSTS


def test_the_upstream_is_written_once_and_then_left_to_the_app(host, edge_ip, pebble_root):
    """The app role owns the upstream once it exists (it points nginx at the slot that
    serves): a run with another tls_upstream_port leaves the file alone, and only a missing
    file is written again."""
    assert "server 127.0.0.1:8000;" in host.file(UPSTREAM).content_string
    # The file as the app writes it at a switch (to the same port here: the echo app is the
    # only one on the edge).
    switched = "# the app's switch\nupstream shipshape_app {\n    server 127.0.0.1:8000;\n}\n"
    encoded = base64.b64encode(switched.encode()).decode()
    assert host.run(f"echo {encoded} | base64 -d > {UPSTREAM} && nginx -t && systemctl reload nginx").rc == 0
    proc = testlib.run_playbook(CONVERGE, {"tls_upstream_port": 8001}, "--tags", "tls_nginx")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert testlib.recap(proc.stdout)[EDGE]["changed"] == 0
    assert host.file(UPSTREAM).content_string == switched
    # Had the run written port 8001 (nothing listens there), nginx would answer 502.
    assert https(edge_ip, NAMES[0], pebble_root, "/")[0] == 200
    # A missing upstream is written again, with tls_upstream_port.
    assert host.run(f"rm -f {UPSTREAM}").rc == 0
    proc = testlib.run_playbook(CONVERGE, None, "--tags", "tls_nginx")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "server 127.0.0.1:8000;" in host.file(UPSTREAM).content_string
    assert "RUNNING HANDLER [tls : Reload nginx]" in proc.stdout
    assert https(edge_ip, NAMES[0], pebble_root, "/")[0] == 200


def test_a_second_site_other_hsts_and_no_rate_limit(edge_ip, pebble_root):
    """Settings the other tests leave at their defaults: a second tls_domains entry gets a
    certificate and a server block of its own, the HSTS settings reach both sites' header,
    and with the rate limit off a burst past it all passes. The next test puts the
    converge.yml settings back."""
    proc = testlib.run_playbook(CONVERGE, {
        "tls_domains": [{"name": NAMES[0], "aliases": [NAMES[1]]}, {"name": SECOND}],
        "tls_hsts_max_age": 300, "tls_hsts_include_subdomains": True, "tls_rate_limit_enabled": False})
    assert proc.returncode == 0, proc.stdout[-3000:]
    second = served_until(edge_ip, pebble_root, lambda c: True, name=SECOND)
    assert sans(second) == {SECOND}
    assert sans(served_cert(edge_ip, NAMES[0], pebble_root)) == set(NAMES)
    assert issuer_cn(second).startswith("Pebble Intermediate CA")
    for name in (NAMES[0], SECOND):
        status, headers, _ = https(edge_ip, name, pebble_root, "/")
        assert status == 200, name
        assert headers["strict-transport-security"] == "max-age=300; includeSubDomains", name
    # converge.yml allows 5 in a burst at 10 a minute; with the limit off, 15 in a row pass.
    assert [https(edge_ip, NAMES[0], pebble_root, "/admin/")[0] for _ in range(15)] == [200] * 15


def test_changed_names_get_a_new_certificate(edge_ip, pebble_root):
    proc = testlib.run_playbook(CONVERGE, domains(NAMES[1], EXTRA))
    assert proc.returncode == 0, proc.stdout[-3000:]
    cert = served_until(edge_ip, pebble_root, lambda c: EXTRA in sans(c))
    assert sans(cert) == {*NAMES, EXTRA}
    assert served_cert(edge_ip, EXTRA, pebble_root)["serialNumber"] == cert["serialNumber"]
    # The second site of the test before is no longer configured: its server block is gone,
    # and the HSTS header is the default again.
    with pytest.raises((ssl.SSLError, OSError)):
        served_cert(edge_ip, SECOND, pebble_root)
    assert https(edge_ip, NAMES[0], pebble_root, "/")[1]["strict-transport-security"] == HSTS


def test_expiry_check_fails_or_warns_when_too_close():
    # Pebble issues 90-day certificates: a 100-day threshold must trip the check
    # (converge passed with the default of 14 days).
    proc = testlib.run_playbook(CONVERGE, {"tls_expiry_min_days": 100}, "--tags", "tls_expiry")
    assert proc.returncode != 0
    assert "in fewer than 100 days (tls_expiry_min_days)" in proc.stdout
    proc = testlib.run_playbook(CONVERGE, {"tls_expiry_min_days": 100, "tls_expiry_action": "warn"},
                                "--tags", "tls_expiry")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert testlib.recap(proc.stdout)[EDGE]["ignored"] == 1


def test_bad_input_fails_before_any_change():
    proc = testlib.run_playbook(CONVERGE, domains("Bad_Name"))
    assert proc.returncode != 0
    assert "tls_domains holds 'Bad_Name'" in proc.stdout
    assert testlib.recap(proc.stdout)[EDGE]["changed"] == 0


def test_acme_server_down_fails_clearly_and_nginx_keeps_serving(edge_ip, pebble_root, tmp_path):
    # The edge serves the three-name certificate of the previous test; the converge
    # names (two) need a new one, which cannot be had while Pebble is stopped.
    before = served_cert(edge_ip, NAMES[0], pebble_root)
    assert EXTRA in sans(before)
    stop = testlib.docker_exec(ACME, "systemctl", "stop", "pebble")
    assert stop.returncode == 0, stop.stderr
    try:
        proc = testlib.run_playbook(CONVERGE)
        assert proc.returncode != 0
        assert f"certbot could not obtain a certificate for {NAMES[0]}" in proc.stdout
        assert "nginx keeps serving with the previous certificate" in proc.stdout
        # Still serving, with the same certificate, verified against the same root.
        status, _, _ = https(edge_ip, NAMES[0], pebble_root, "/")
        assert status == 200
        assert served_cert(edge_ip, NAMES[0], pebble_root)["serialNumber"] == before["serialNumber"]
    finally:
        # Pebble keeps its state in memory: after a restart it has new roots and no
        # accounts, so certbot's account for it goes too, and the play is run again.
        start = testlib.docker_exec(ACME, "systemctl", "start", "pebble")
        testlib.docker_exec(EDGE, "rm", "-rf", "/etc/letsencrypt/accounts/tls-acme:14000")
        time.sleep(2)
        restore = testlib.run_playbook(CONVERGE)
    assert start.returncode == 0, start.stderr
    assert restore.returncode == 0, restore.stdout[-3000:]
    new_root = tmp_path / "root.pem"
    new_root.write_text(pebble_root_pem())
    cert = served_until(edge_ip, new_root, lambda c: EXTRA not in sans(c))
    assert sans(cert) == set(NAMES)


def test_check_mode_completes_on_a_fresh_host(fresh_check_run):
    # tls-acme has neither nginx nor certbot; the check run started with the session.
    proc = fresh_check_run.result(timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert testlib.recap(proc.stdout)[ACME]["failed"] == 0
    assert testlib.docker_exec(ACME, "test", "-e", "/etc/nginx").returncode != 0
