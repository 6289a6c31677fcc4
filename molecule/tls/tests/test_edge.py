"""The edge as clients see it, after converge and the idempotence run.

Probed from the controller against the edge's address on the scenario network. Each test
names the problem prepare.yml planted or the claim of the role it proves.
"""

from __future__ import annotations

import gzip
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from tlsprobe import (EDGE, NAMES, PEBBLE_TLS_CERT, echoed, http_get, https, issuer_cn, post_body, sans,
                      served_cert, websocket_accept, websocket_echo)

testinfra_hosts = [f"ansible://{EDGE}"]
LIVE = "/etc/letsencrypt/live/app.example.test"
SSLYZE = Path(__file__).resolve().parents[3] / ".venv/bin/sslyze"
HTTP_CONF = "/etc/nginx/conf.d/shipshape-http.conf"
SITE_CONF = f"/etc/nginx/conf.d/shipshape-site-{NAMES[0]}.conf"
ACME_DIRECTORY = "https://tls-acme:14000/dir"
CONTACT_EMAIL = "ops@example.test"
# tls_client_max_body_size: the role's default, 10m.
BODY_LIMIT = 10 * 1024 * 1024
# tls_rate_limit_rate and tls_rate_limit_burst of converge.yml. /admin/ and /login share one
# limit_req zone keyed by the client address: with nodelay, 1 + BURST requests pass at once,
# then one more every 60 / RATE_PER_MINUTE seconds.
RATE_PER_MINUTE = 10
BURST = 5
_last_limited_burst = [float("-inf")]


def limited_burst(edge_ip, pebble_root, path: str, count: int) -> tuple[list[int], float]:
    """Statuses of `count` requests to `path` sent back to back, and the seconds they took.
    Sent once the zone has forgotten earlier bursts: a full bucket (BURST plus the request
    that found it full) drains in (BURST + 1) * 60 / RATE_PER_MINUTE seconds, a little more in
    fact (nginx keeps 10r/m as 166 thousandths per second, 36.1 s instead of 36 s); one slot
    more is the margin."""
    wait = _last_limited_burst[0] + (BURST + 2) * 60 / RATE_PER_MINUTE - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    start = time.monotonic()
    statuses = [https(edge_ip, NAMES[0], pebble_root, path)[0] for _ in range(count)]
    _last_limited_burst[0] = time.monotonic()
    return statuses, _last_limited_burst[0] - start


@pytest.mark.parametrize("name", NAMES)
def test_served_certificate_is_issued_by_pebble_for_both_names(edge_ip, pebble_root, name):
    # Verifies against the root fetched from Pebble's management API, for the name's SNI.
    cert = served_cert(edge_ip, name, pebble_root)
    assert issuer_cn(cert).startswith("Pebble Intermediate CA"), cert["issuer"]
    assert sans(cert) == set(NAMES)


def test_served_certificate_does_not_verify_against_another_ca(edge_ip, tmp_path):
    # Negative control: the same check fails against a CA that did not sign the chain.
    other = tmp_path / "other.pem"
    other.write_text(subprocess.run(["docker", "exec", EDGE, "cat", PEBBLE_TLS_CERT],
                                    capture_output=True, text=True, check=True).stdout)
    with pytest.raises(ssl.SSLCertVerificationError):
        served_cert(edge_ip, NAMES[0], other)


def test_first_issuance_happened_once(host, edge_ip, pebble_root):
    # The idempotence run requested no new certificate: the lineage holds one version,
    # and it is the one served.
    archive = host.run("ls /etc/letsencrypt/archive/app.example.test").stdout.split()
    assert sorted(a for a in archive if a.startswith("cert")) == ["cert1.pem"]
    live_serial = host.run(f"openssl x509 -in {LIVE}/cert.pem -noout -serial").stdout.strip()
    served = served_cert(edge_ip, NAMES[0], pebble_root)["serialNumber"]
    assert live_serial.split("=")[1].lstrip("0") == served.lstrip("0")


@pytest.mark.parametrize("name", NAMES)
def test_http_redirects_to_https(edge_ip, name):
    status, headers, _ = http_get(edge_ip, name, "/some/page?q=1")
    assert status in (301, 308)
    assert headers["location"] == f"https://{name}/some/page?q=1"


def test_acme_challenge_is_served_over_http_not_redirected(host, edge_ip):
    token = "probe-token-0123456789"
    path = f"/var/www/acme/.well-known/acme-challenge/{token}"
    host.run(f"mkdir -p /var/www/acme/.well-known/acme-challenge && echo proof > {path}")
    try:
        status, _, body = http_get(edge_ip, NAMES[1], f"/.well-known/acme-challenge/{token}")
    finally:
        host.run(f"rm -f {path}")
    assert (status, body.strip()) == (200, b"proof")


def test_security_headers(edge_ip, pebble_root):
    status, headers, _ = https(edge_ip, NAMES[0], pebble_root, "/")
    assert status == 200
    assert headers["strict-transport-security"] == "max-age=63072000"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert headers["x-frame-options"] == "DENY"


def test_server_header_shows_no_version(edge_ip, pebble_root):
    # Planted: server_tokens on in nginx.conf.
    _, headers, _ = https(edge_ip, NAMES[0], pebble_root, "/")
    assert headers["server"] == "nginx"


def test_app_gets_forwarded_headers_and_no_spoofed_client_address(edge_ip, pebble_root):
    status, _, body = https(edge_ip, NAMES[1], pebble_root, "/x",
                            headers={"X-Forwarded-For": "203.0.113.9"})
    received = echoed(body)["headers"]
    assert status == 200
    assert received["X-Forwarded-Proto"] == "https"
    assert received["X-Forwarded-Host"] == NAMES[1]
    assert received["Host"] == NAMES[1]
    assert "203.0.113.9" not in received["X-Forwarded-For"]
    assert received["X-Forwarded-For"] == received["X-Real-IP"]


def test_websocket_upgrade_is_passed_to_the_app(edge_ip, pebble_root):
    # No Sec-WebSocket-Key: the app answers with its JSON echo of what nginx sent it.
    _, _, body = https(edge_ip, NAMES[0], pebble_root, "/ws",
                       headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert echoed(body)["version"] == "HTTP/1.1"
    received = echoed(body)["headers"]
    assert received["Upgrade"] == "websocket"
    assert received["Connection"].lower() == "upgrade"


def test_websocket_handshake_and_frames_go_through_nginx(edge_ip, pebble_root):
    # The app completes the handshake with 101 and sends every frame back: nginx must
    # switch the connection to a tunnel both ways.
    message = b"shipshape websocket probe"
    status, headers, key, frames = websocket_echo(edge_ip, NAMES[0], pebble_root, "/ws", message)
    assert status.startswith("HTTP/1.1 101 "), (status, headers)
    assert headers["upgrade"].lower() == "websocket"
    assert headers["connection"].lower() == "upgrade"
    assert headers["sec-websocket-accept"] == websocket_accept(key)
    # A text frame (FIN, opcode 1) with the message, then the answer to the close frame.
    assert frames == [(0x81, message), (0x88, b"")]


def test_request_body_up_to_the_limit_reaches_the_app_and_larger_gets_413(host, edge_ip, pebble_root):
    assert f"client_max_body_size {BODY_LIMIT // (1024 * 1024)}m;" in host.file(SITE_CONF).content_string
    status, _, body = post_body(edge_ip, NAMES[0], pebble_root, "/upload", BODY_LIMIT)
    assert status == 200
    assert echoed(body)["method"] == "POST"
    assert echoed(body)["headers"]["Content-Length"] == str(BODY_LIMIT)
    # One byte more: nginx refuses it itself (its error page, not the app's JSON), and its
    # error pages carry the security headers too.
    status, headers, body = post_body(edge_ip, NAMES[0], pebble_root, "/upload", BODY_LIMIT + 1)
    assert status == 413
    assert b"413 Request Entity Too Large" in body
    assert headers["strict-transport-security"] == "max-age=63072000"


def test_responses_are_gzipped(edge_ip, pebble_root):
    _, headers, body = https(edge_ip, NAMES[0], pebble_root, "/" + "x" * 300,
                             headers={"Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip"
    assert echoed(gzip.decompress(body))["app"] == "echo"


def test_admin_is_rate_limited_with_429(host, edge_ip, pebble_root):
    assert f"rate={RATE_PER_MINUTE}r/m;" in host.file(HTTP_CONF).content_string
    assert "limit_req_status 429;" in host.file(HTTP_CONF).content_string
    assert f"burst={BURST} nodelay;" in host.file(SITE_CONF).content_string
    statuses, seconds = limited_burst(edge_ip, pebble_root, "/admin/", BURST + 4)
    # Valid while the burst takes less than the 6 s after which one more request may pass.
    assert statuses == [200] * (BURST + 1) + [429] * 3, (statuses, seconds)


def test_login_alone_is_rate_limited_with_429(edge_ip, pebble_root):
    # Only /login this time, after the /admin/ burst has drained from the shared zone.
    statuses, seconds = limited_burst(edge_ip, pebble_root, "/login", BURST + 4)
    assert statuses == [200] * (BURST + 1) + [429] * 3, (statuses, seconds)
    # Other paths are not limited: the same client still gets through.
    assert {https(edge_ip, NAMES[0], pebble_root, "/")[0] for _ in range(15)} == {200}


def test_unknown_host_gets_no_http_answer(edge_ip):
    # Planted: Debian's default site answered any Host with "Welcome to nginx".
    for host_header in ("unknown.example.test", edge_ip):
        with socket.create_connection((edge_ip, 80), timeout=10) as sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
            assert sock.recv(4096) == b""


@pytest.mark.parametrize("sni", ["unknown.example.test", None])
def test_unknown_tls_name_is_refused_without_a_certificate(edge_ip, sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((edge_ip, 443), timeout=10) as sock:
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|unrecognized name"):
            with ctx.wrap_socket(sock, server_hostname=sni):
                pass


def test_sslyze_finds_mozilla_intermediate_compliance(edge_ip, pebble_root):
    # Planted: TLS 1.0 and 1.1 in nginx.conf; sslyze would report them as not compliant.
    proc = subprocess.run(
        [str(SSLYZE), "--mozilla_config=intermediate", "--certinfo_ca_file", str(pebble_root),
         f"{NAMES[0]}:443{{{edge_ip}}}"],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"{NAMES[0]}:443: OK - Compliant." in proc.stdout


def test_renewal_timer_is_enabled_and_running(host):
    # Planted: certbot.timer stopped and disabled.
    timer = host.service("certbot.timer")
    assert timer.is_enabled
    assert timer.is_running


def test_deploy_hook_reloads_nginx_after_checking_it(host):
    hook = host.file("/etc/letsencrypt/renewal-hooks/deploy/shipshape-reload-nginx")
    assert hook.mode == 0o755
    assert "nginx -t" in hook.content_string and "systemctl reload nginx" in hook.content_string


def test_acme_account_carries_the_contact_email(host):
    # certbot show_account fetches the account from the ACME server (Pebble), so this is
    # the contact the server holds, not only what certbot keeps on disk.
    out = host.run(f"REQUESTS_CA_BUNDLE={PEBBLE_TLS_CERT} certbot show_account --non-interactive "
                   f"--server {ACME_DIRECTORY}")
    assert out.rc == 0, out.stdout + out.stderr
    assert f"Email contact: {CONTACT_EMAIL}" in out.stdout + out.stderr, out.stdout + out.stderr


def test_renewal_service_trusts_the_acme_servers_ca(host):
    env = host.run("systemctl show certbot.service -p Environment").stdout
    assert f"REQUESTS_CA_BUNDLE={PEBBLE_TLS_CERT}" in env
