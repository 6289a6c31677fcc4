"""Smoke checks of a test-bed host: systemd booted fully, sshd runs, Python is there."""


def test_systemd_reached_running(host):
    state = host.run("systemctl is-system-running")
    assert state.stdout.strip() == "running", host.run("systemctl --failed --no-legend").stdout


def test_no_failed_units(host):
    assert host.run("systemctl --failed --no-legend --plain").stdout.strip() == ""


def test_sshd_is_running_and_listening(host):
    assert host.service("ssh").is_running
    assert host.socket("tcp://0.0.0.0:22").is_listening or host.socket("tcp://:::22").is_listening


def test_release_is_supported(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.split(".")[0] in {"12", "13"}


def test_host_keys_are_unique_to_the_instance(host):
    # Generated at first boot, not baked into the image.
    key = host.file("/etc/ssh/ssh_host_ed25519_key.pub")
    assert key.exists
    image_created = host.run("stat -c %Y /etc/hostname").stdout.strip()
    assert int(host.run("stat -c %Y /etc/ssh/ssh_host_ed25519_key.pub").stdout) >= int(image_created)


def test_preflight_left_a_marker_free_host(host):
    # The pre-flight play only reads; it must not leave files behind.
    assert not host.file("/etc/shipshape").exists


def test_the_tests_reach_the_host_over_ssh(host):
    # The scenario's driver is `default`: Molecule and testinfra log in over real SSH with the
    # key create.yml made, not through `docker exec` (which sets no SSH_CONNECTION).
    client_ip, _, server_ip, server_port = host.run("echo $SSH_CONNECTION").stdout.split()
    assert server_port == "22" and client_ip != server_ip
