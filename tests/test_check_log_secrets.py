"""scripts/check_log_secrets.py finds secret values in logs and names only the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts/check_log_secrets.py"


def run(tmp_path, secrets_yaml: str, log_text: str):
    secrets = tmp_path / "secrets.yml"
    secrets.write_text(secrets_yaml)
    log = tmp_path / "run.log"
    log.write_text(log_text)
    return subprocess.run([sys.executable, str(SCRIPT), "--secrets", str(secrets), str(log)],
                          capture_output=True, text=True, check=False)


def test_clean_log_passes(tmp_path):
    proc = run(tmp_path, "app_secret_key: Zq8vT3pL0xW9yR2k\n", "TASK [x] ok: [host]\n")
    assert proc.returncode == 0
    assert "Zq8vT3pL0xW9yR2k" not in proc.stdout + proc.stderr


def test_leak_is_found_and_named_without_the_value(tmp_path):
    proc = run(tmp_path, "vault:\n  db_password: Zq8vT3pL0xW9yR2k\n",
               "changed: [host] => {\"password\": \"Zq8vT3pL0xW9yR2k\"}\n")
    assert proc.returncode == 1
    assert "vault.db_password" in proc.stderr
    assert "Zq8vT3pL0xW9yR2k" not in proc.stdout + proc.stderr


def test_a_line_of_a_private_key_counts_as_a_leak(tmp_path):
    import yaml
    # A throwaway key made for this test: its third line is the second body line.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    key = (tmp_path / "k").read_text()
    proc = run(tmp_path, yaml.safe_dump({"deploy_key": key}), f"msg: {key.splitlines()[2]}\n")
    assert proc.returncode == 1
    assert "deploy_key (line 3)" in proc.stderr


def test_the_header_every_openssh_key_shares_is_no_leak(tmp_path):
    # The first body line is the same in every unencrypted ed25519 key: another key's log
    # showing it is no sign of this key.
    import yaml
    for name in ("a", "b"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    ours, other = (tmp_path / "a").read_text(), (tmp_path / "b").read_text()
    assert ours.splitlines()[1] == other.splitlines()[1]
    proc = run(tmp_path, yaml.safe_dump({"deploy_key": ours}), f"msg: {other}\n")
    assert proc.returncode == 0, proc.stderr


def test_a_file_without_secrets_is_an_error(tmp_path):
    proc = run(tmp_path, "short: abc\n", "anything\n")
    assert proc.returncode == 1
    assert "no secret values" in proc.stderr


def test_a_registered_secret_is_found_url_escaped(tmp_path, monkeypatch):
    # What a test or script registers (record()) is read from the register directory.
    monkeypatch.setenv("SHIPSHAPE_SECRETS_DIR", str(tmp_path / "register"))
    import importlib.util
    spec = importlib.util.spec_from_file_location("check_log_secrets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.record("vault password", "p@ss/word+Zq8vT3")
    assert oct((tmp_path / "register" / "vault_password").stat().st_mode & 0o777) == "0o600"
    log = tmp_path / "run.log"
    log.write_text("GET /login?password=p%40ss%2Fword%2BZq8vT3 HTTP/1.1\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--secrets-dir", str(tmp_path / "register"), str(log)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "the value of vault_password appears in the output, URL-escaped" in proc.stderr
    assert "p@ss/word+Zq8vT3" not in proc.stdout + proc.stderr
