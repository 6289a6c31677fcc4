"""Filters of the ufw role: the rules UFW holds (`ufw show added`), read into the options of
community.general.ufw, and those of them nobody configured.

Each filter is a plain function of its arguments; none asks the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ACTIONS = ("allow", "deny", "reject", "limit")
KEYS = ("route", "rule", "direction", "interface", "proto", "from_ip", "from_port", "to_ip", "to_port")


def _rule(route=False, rule="allow", direction="", interface="", proto="any", from_ip="any", from_port="",
          to_ip="any", to_port="") -> dict:
    return {"route": route, "rule": rule, "direction": direction, "interface": interface, "proto": proto,
            "from_ip": from_ip, "from_port": from_port, "to_ip": to_ip, "to_port": to_port}


def parse_added_line(line: str) -> dict | None:
    """One line of `ufw show added` ("ufw route allow from 10.0.0.5 to any port 5432 proto
    tcp", "ufw limit 22/tcp", ...) as the options of community.general.ufw (all of KEYS, plus
    `line`); None for a line that is not a rule or that this does not understand."""
    tokens = line.split()
    if len(tokens) < 3 or tokens[0] != "ufw":
        return None
    tokens = tokens[1:]
    rule = _rule()
    if tokens[0] == "route":
        rule["route"] = True
        tokens = tokens[1:]
    if not tokens or tokens[0] not in ACTIONS:
        return None
    rule["rule"] = tokens.pop(0)
    if tokens and tokens[0] in ("in", "out"):
        rule["direction"] = tokens.pop(0)
    if len(tokens) >= 2 and tokens[0] == "on":
        rule["interface"] = tokens[1]
        tokens = tokens[2:]
    if "comment" in tokens:
        tokens = tokens[:tokens.index("comment")]
    if len(tokens) == 1 and tokens[0] not in ("from", "to", "proto", "port"):
        port, _, proto = tokens[0].partition("/")
        if not port or not all(part.isdigit() for part in port.replace(":", ",").split(",")):
            return None  # an application profile ("OpenSSH") or something else
        rule.update(to_port=port, proto=proto or "any")
        return {**rule, "line": line.strip()}
    place = None
    while tokens:
        word = tokens.pop(0)
        if word in ("from", "to") and tokens:
            place = word
            rule[f"{word}_ip"] = tokens.pop(0)
        elif word == "port" and tokens and place:
            rule[f"{place}_port"] = tokens.pop(0)
        elif word == "proto" and tokens:
            rule["proto"] = tokens.pop(0)
        else:
            return None
    return {**rule, "line": line.strip()}


def ufw_added_rules(text: str) -> list:
    """The rules of `ufw show added` output that this understands, in order."""
    return [rule for rule in map(parse_added_line, text.splitlines()) if rule is not None]


def ufw_unknown_rules(added: Iterable[Mapping], wanted: Iterable[Mapping], ssh_rules: Iterable[Mapping]) -> list:
    """The rules of *added* (ufw_added_rules) that nobody configured: not one of *wanted*
    (the role's allow rules: port, proto, from, route) nor of *ssh_rules* (rule, port). A rule
    on an SSH port is never among them: deleting it could cut the connection Ansible uses."""
    def key(rule: Mapping) -> tuple:
        return tuple(str(rule.get(name, "")) for name in KEYS)

    known = {key(_rule(route=bool(w.get("route")), rule="allow", proto=str(w.get("proto", "tcp")),
                       from_ip=str(w.get("from", "any")), to_port=str(w.get("port"))))
             for w in wanted}
    known |= {key(_rule(rule=str(s.get("rule", "limit")), proto="tcp", to_port=str(s.get("port")))) for s in ssh_rules}
    ssh_ports = {str(s.get("port")) for s in ssh_rules}
    return [rule for rule in added if key(rule) not in known and str(rule.get("to_port")) not in ssh_ports]


class FilterModule:
    """Filters of the ufw role."""

    def filters(self):
        return {"ufw_added_rules": ufw_added_rules, "ufw_unknown_rules": ufw_unknown_rules}
