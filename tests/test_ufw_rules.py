"""The ufw role's filters: `ufw show added` read into community.general.ufw's options, and the
rules nobody configured (which the role deletes), never one on the SSH port."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "ufw_rules", Path(__file__).resolve().parent.parent / "roles/ufw/filter_plugins/ufw_rules.py")
ufw_rules = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ufw_rules)

# What `ufw show added` printed on a Debian 13 host for these rules.
SHOWN = """Added user rules (see 'ufw status' for running firewall):
ufw limit 22/tcp
ufw allow 80/tcp
ufw allow 443/tcp
ufw allow from 10.1.2.3 to any port 5432 proto tcp
ufw route allow 8080/tcp
ufw route allow from 10.1.2.3 to any port 5432 proto tcp
ufw allow 9000
ufw deny in on eth0 to any port 25
ufw allow 6000:6005/tcp
ufw allow from 10.0.0.0/8 to any port 53 proto udp
ufw allow OpenSSH
"""


def strip(rule: dict) -> dict:
    """The options that differ from community.general.ufw's defaults."""
    defaults = ufw_rules._rule()
    return {key: value for key, value in rule.items() if key != "line" and defaults.get(key) != value}


def test_show_added_is_read_into_the_options_of_the_ufw_module():
    rules = ufw_rules.ufw_added_rules(SHOWN)
    assert [strip(rule) for rule in rules] == [
        {"rule": "limit", "proto": "tcp", "to_port": "22"},
        {"proto": "tcp", "to_port": "80"},
        {"proto": "tcp", "to_port": "443"},
        {"proto": "tcp", "from_ip": "10.1.2.3", "to_port": "5432"},
        {"route": True, "proto": "tcp", "to_port": "8080"},
        {"route": True, "proto": "tcp", "from_ip": "10.1.2.3", "to_port": "5432"},
        {"to_port": "9000"},
        {"rule": "deny", "direction": "in", "interface": "eth0", "to_port": "25"},
        {"proto": "tcp", "to_port": "6000:6005"},
        {"proto": "udp", "from_ip": "10.0.0.0/8", "to_port": "53"},
    ]  # the application profile (OpenSSH) is not understood, so never deleted
    assert rules[3]["line"] == "ufw allow from 10.1.2.3 to any port 5432 proto tcp"


@pytest.mark.parametrize("line", ["Added user rules (see 'ufw status' for running firewall):", "", "ufw",
                                  "ufw frobnicate 22/tcp", "ufw allow from", "ufw allow to any port 22 bogus"])
def test_what_is_not_a_rule_is_left_alone(line):
    assert ufw_rules.parse_added_line(line) is None


def test_the_unknown_rules_are_those_nobody_configured_and_never_on_the_ssh_port():
    added = ufw_rules.ufw_added_rules(SHOWN + "ufw allow 22/tcp\nufw allow 2200/tcp\n")
    wanted = [{"port": 80, "proto": "tcp", "from": "any", "route": False},
              {"port": 443, "proto": "tcp", "from": "any", "route": False},
              {"port": "5432", "proto": "tcp", "from": "10.1.2.3", "route": False},
              {"port": "5432", "proto": "tcp", "from": "10.1.2.3", "route": True}]
    ssh = [{"rule": "limit", "port": "22"}, {"rule": "limit", "port": "2200"}]
    unknown = [rule["line"] for rule in ufw_rules.ufw_unknown_rules(added, wanted, ssh)]
    assert unknown == ["ufw route allow 8080/tcp", "ufw allow 9000", "ufw deny in on eth0 to any port 25",
                       "ufw allow 6000:6005/tcp", "ufw allow from 10.0.0.0/8 to any port 53 proto udp"]


def test_nothing_is_unknown_on_a_firewall_as_configured():
    added = ufw_rules.ufw_added_rules("ufw limit 22/tcp\nufw allow 80/tcp\nufw allow 443/tcp\n")
    wanted = [{"port": 80, "proto": "tcp", "from": "any"}, {"port": 443, "proto": "tcp", "from": "any"}]
    assert ufw_rules.ufw_unknown_rules(added, wanted, [{"rule": "limit", "port": 22}]) == []
