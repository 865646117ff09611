"""Where to deploy: one ``[USER@]HOST[:PORT]`` target, or the hosts of an Ansible YAML inventory.

The inventory is read with Ansible's own variable names so that users reuse the inventories they
have: ``ansible_host``, ``ansible_port``, ``ansible_user``, ``ansible_ssh_private_key_file``,
``ansible_python_interpreter``, plus ``spikeedge_board`` (a board profile name, ``board/profiles/``).
A host name, port or user left out is looked up in ``~/.ssh/config`` at connect time, as ssh
does (``deploy/ssh.py``), so a ``Host`` alias works as ``--to`` or as an inventory host.
Variables are inherited as Ansible does for these simple cases: ``all.vars``, then each group's
``vars`` from the outermost group inwards, then the host's own variables; a host listed in
several groups gets each group's variables (later groups win). ``--group G`` selects the hosts
of ``G`` and of its child groups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import DeployError

KNOWN_VARS = ("ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file", "ansible_python_interpreter", "spikeedge_board")


@dataclass(frozen=True)
class Target:
    name: str  # inventory host name (or the host itself)
    host: str
    port: Optional[int] = None  # None: ~/.ssh/config's Port for this host, else 22 (as ssh)
    user: Optional[str] = None  # None: ~/.ssh/config's User, else the local user name (as ssh)
    key_file: Optional[str] = None
    python: str = "python3"
    board: Optional[str] = None
    groups: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def address(self) -> str:
        return "%s%s%s" % (self.user + "@" if self.user else "", self.host, ":%d" % self.port if self.port is not None else "")


_TARGET = re.compile(r"^(?:(?P<user>[^@\s:]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^@\s:\[\]]+)(?::(?P<port>\d+))?$")


def parse_target(text: str) -> Target:
    """``[USER@]HOST[:PORT]`` (IPv6 hosts in brackets: ``pi@[fe80::1]:22``)."""
    m = _TARGET.match(text.strip())
    if not m:
        raise DeployError("--to %r: expected [USER@]HOST[:PORT]" % text)
    port = int(m.group("port")) if m.group("port") else None
    if port is not None and not 0 < port < 65536:
        raise DeployError("--to %r: port %d is out of range" % (text, port))
    host = m.group("host").strip("[]")
    return Target(name=text.strip(), host=host, port=port, user=m.group("user"))


def _port(value: Any, where: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise DeployError("%s: ansible_port %r is not a number" % (where, value)) from None
    if not 0 < port < 65536:
        raise DeployError("%s: ansible_port %d is out of range" % (where, port))
    return port


def _mapping(value: Any, where: str) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DeployError("%s is not a mapping" % where)
    return value


def load_inventory(path: Any, group: Optional[str] = None) -> List[Target]:
    """The hosts of an Ansible YAML inventory (optionally only group ``group``), in file order."""
    path = Path(path)
    try:
        import yaml
    except ImportError:
        raise DeployError("--inventory needs PyYAML: pip install 'spikeedge[deploy]'") from None
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeployError("%s: no such inventory file" % path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeployError("%s: cannot read the inventory (%s)" % (path, exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = " at line %d" % (mark.line + 1) if mark is not None else ""
        raise DeployError("%s: not valid YAML%s" % (path, where)) from None
    if not isinstance(doc, dict) or not doc:
        raise DeployError("%s: an inventory is a YAML mapping of groups (e.g. all: {hosts: ...})" % path)
    hosts: Dict[str, Dict[str, Any]] = {}  # name -> merged vars
    member: Dict[str, List[str]] = {}  # name -> groups
    groups_seen: Dict[str, List[str]] = {}  # group -> hosts (recursively)

    def walk(name: str, node: Any, inherited: Dict[str, Any], chain: Tuple[str, ...]) -> List[str]:
        where = "%s: group %r" % (path, name)
        node = _mapping(node, where)
        unknown = set(node) - {"hosts", "vars", "children"}
        if unknown:
            raise DeployError("%s has unknown key(s) %s (expected hosts, vars, children)" % (where, ", ".join(sorted(unknown))))
        gvars = dict(inherited)
        gvars.update(_mapping(node.get("vars"), where + " vars"))
        found: List[str] = []
        for host, hvars in _mapping(node.get("hosts"), where + " hosts").items():
            merged = dict(hosts.get(str(host), {}))
            merged.update(gvars)
            merged.update(_mapping(hvars, "%s: host %r" % (path, host)))
            hosts[str(host)] = merged
            member.setdefault(str(host), [])
            for g in chain + (name,):
                if g not in member[str(host)]:
                    member[str(host)].append(g)
            found.append(str(host))
        for child, cnode in _mapping(node.get("children"), where + " children").items():
            if child in chain:
                raise DeployError("%s: group %r contains itself" % (path, child))
            found += walk(str(child), cnode, gvars, chain + (name,))
        groups_seen.setdefault(name, [])
        groups_seen[name] += [h for h in found if h not in groups_seen[name]]
        return found

    for top, node in doc.items():
        walk(str(top), node, {}, ())
    names = list(hosts)
    if group is not None:
        if group not in groups_seen:
            raise DeployError("%s: no group %r (groups: %s)" % (path, group, ", ".join(sorted(groups_seen))))
        names = [h for h in names if h in groups_seen[group]]
    if not names:
        raise DeployError("%s: no hosts%s" % (path, " in group %r" % group if group else ""))
    out = []
    for name in names:
        v = hosts[name]
        where = "%s: host %r" % (path, name)
        out.append(Target(
            name=name, host=str(v.get("ansible_host", name)), port=_port(v["ansible_port"], where) if v.get("ansible_port") is not None else None,
            user=str(v["ansible_user"]) if v.get("ansible_user") is not None else None,
            key_file=str(Path(str(v["ansible_ssh_private_key_file"])).expanduser()) if v.get("ansible_ssh_private_key_file") else None,
            python=str(v.get("ansible_python_interpreter", "python3")),
            board=str(v["spikeedge_board"]) if v.get("spikeedge_board") else None,
            groups=tuple(member[name]),
        ))
    return out
