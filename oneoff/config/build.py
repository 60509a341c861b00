"""From the validated file to a plain :class:`Inventory`: cross-checks and the file's cascade.

pydantic checks each mapping on its own; what needs the whole file is checked here:
group members must be hosts, a name must not be both a host and a group, every host
needs an ``app_root``, and two groups of one host must not set a key differently
(file order would silently decide). Every problem is collected before one error is
raised, so a user fixes the file in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from oneoff.config.hints import listing, show, suggest
from oneoff.config.model import Inventory
from oneoff.config.schema import SETTINGS_KEYS, Group, Host, InventoryFile
from oneoff.config.yamlfile import Locator, Problem
from oneoff.errors import InventoryError
from oneoff.values import Task

__all__ = ["build"]

Clash = tuple[str, str, str]
"""(key, first group, second group): two groups of a host set *key* differently."""


def build(path: Path, model: InventoryFile, locator: Locator) -> Inventory:
    """The inventory *model* describes; InventoryError listing every cross-check failed."""
    problems = list(_group_problems(model))
    layers: dict[str, dict[str, Any]] = {}
    # One line reports a whole group pair, with every host it affects.
    clashes: dict[Clash, list[str]] = {}
    for name, host in model.hosts.items():
        layers[name], found = _layer(model, name, host)
        for clash in found:
            clashes.setdefault(clash, []).append(name)
        if "app_root" not in layers[name]:
            problems.append(
                (
                    ("hosts", name),
                    "no app_root for this host: set app_root under defaults:, on the host, "
                    "or in one of its groups",
                )
            )
    problems.extend(_clash_problem(model, clash, hosts) for clash, hosts in clashes.items())
    if problems:
        raise InventoryError(locator.report(problems))
    return Inventory(
        path=path,
        hosts=tuple(model.hosts),
        groups={g: tuple(group.hosts) for g, group in model.groups.items()},
        tasks=_tasks(path, model, locator),
        layers=layers,
        roles={h: tuple(host.roles) for h, host in model.hosts.items()},
        primaries=frozenset(h for h, host in model.hosts.items() if host.primary),
    )


def _group_problems(model: InventoryFile) -> Iterator[Problem]:
    host_names = list(model.hosts)
    for gname, group in model.groups.items():
        if gname in model.hosts:
            yield ("groups", gname), f"a host is also named {gname}; a target must mean one thing"
        yield from _member_problems(gname, group, host_names)


def _member_problems(gname: str, group: Group, host_names: Sequence[str]) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, member in enumerate(group.hosts):
        loc = ("groups", gname, "hosts", i)
        if member not in host_names:
            yield (
                loc,
                f"unknown host {member!r}{suggest(member, host_names)} "
                f"(known hosts: {listing(host_names)})",
            )
        elif member in seen:
            yield loc, f"{member} is listed twice"
        seen.add(member)


def _layer(model: InventoryFile, name: str, host: Host) -> tuple[dict[str, Any], list[Clash]]:
    """The keys the file sets for host *name*: defaults < its groups < the host itself."""
    merged = {k: getattr(model.defaults, k) for k in model.defaults.model_fields_set}
    from_groups, clashes = _from_groups(model, name, host)
    merged.update(from_groups)
    merged.update({k: getattr(host, k) for k in host.model_fields_set if k in SETTINGS_KEYS})
    if "hostname" in host.model_fields_set:
        merged["hostname"] = host.hostname
    return merged, clashes


def _from_groups(model: InventoryFile, name: str, host: Host) -> tuple[dict[str, Any], list[Clash]]:
    """What *name*'s groups set, and where two of them disagree on a key the host leaves."""
    chosen: dict[str, tuple[str, Any]] = {}
    clashes: list[Clash] = []
    for gname, group in model.groups.items():
        if name not in group.hosts:
            continue
        for key in sorted(group.model_fields_set - {"hosts"}):
            value = getattr(group, key)
            earlier = chosen.get(key)
            if earlier is not None and earlier[1] != value:
                if key not in host.model_fields_set:
                    clashes.append((key, earlier[0], gname))
                continue
            chosen[key] = (gname, value)
    return {k: v for k, (_, v) in chosen.items()}, clashes


def _clash_problem(model: InventoryFile, clash: Clash, hosts: Sequence[str]) -> Problem:
    key, first, second = clash
    first_value = getattr(model.groups[first], key)
    second_value = getattr(model.groups[second], key)
    many = len(hosts) > 1
    return (
        ("groups", second, key),
        f"host{'s' if many else ''} {', '.join(hosts)} {'are' if many else 'is'} in groups "
        f"{first} and {second}, which set {key} differently ({show(first_value)} and "
        f"{show(second_value)}); set {key} on the host instead",
    )


def _tasks(path: Path, model: InventoryFile, locator: Locator) -> dict[str, Task]:
    """The file's tasks; each remembers its line, for ``oneoff tasks`` and collisions."""
    return {
        name: Task(
            name=name,
            command=tuple(spec.command),
            source=f"{path.name}:{locator.line(('tasks', name))}",
            run=spec.run,
            lock=spec.lock,
            timeout=spec.timeout,
            tty=spec.tty,
            description=spec.description,
        )
        for name, spec in model.tasks.items()
    }
