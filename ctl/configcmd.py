"""``hftctl config``: print the built-in suite config; check a config file before using it.

``check`` validates as the daemons do: the suite (``load_config``: every problem, by key
path), then each enabled daemon's plugin configs against their plugins' ``Config`` models,
as the daemon checks them when it loads each plugin (a plugin given as a .py file is not
imported here). Then it warns about what is valid but probably a mistake: alerts sent over
plain http across the network, a control listener reachable beyond this machine without
TLS, secrets in a file every user can read, and an engine pinned to a CPU another daemon is
pinned to.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import click
from pydantic import ValidationError

from hft.daemons.runtime.config import (
    DAEMON_NAMES,
    WATCHDOG,
    ConfigError,
    SuiteConfig,
    default_config_path,
    load_config,
)
from hft.daemons.runtime.plugins import exception_text, is_file_spec, named_plugin
from hft.daemons.runtime.secrets import is_secret_key


@click.group("config")
def config_group() -> None:
    """Print the built-in suite config, or check a config file."""


@config_group.command("default")
def config_default() -> None:
    """Print the built-in suite config (daemons/default.toml).

    Every key with its default: a starting point for your own file.
    """
    click.echo(default_config_path().read_text(encoding="utf-8"), nl=False)


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def config_check(file: Path) -> None:
    """Check FILE as the daemons would, its plugins' configs included.

    One line per problem (exit 1), or "FILE: ok" (exit 0) after a line per warning: valid
    but probably a mistake (a webhook over plain http to another host, a control listener
    beyond loopback, secrets in a file every user can read).
    """
    try:
        suite = load_config(file)
        problems = list(plugin_problems(suite))
    except ConfigError as exc:
        problems = exc.problems
    if problems:
        for key, reason in problems:
            click.echo(f"{file}: {key}: {reason}" if key else f"{file}: {reason}")
        raise SystemExit(1)
    for warning in warnings(suite, file):
        click.echo(f"{file}: warning: {warning}")
    click.echo(f"{file}: ok")


def plugin_problems(suite: SuiteConfig) -> Iterator[tuple[str, str]]:
    """(key path, reason) for each plugin of an enabled daemon that cannot be loaded or whose
    ``config`` its ``Config`` model refuses; never the value (it may be a secret)."""
    for name in (*DAEMON_NAMES, WATCHDOG):
        daemon = suite.daemon(name)
        if not daemon.enabled:
            continue
        for plugin_name, plugin in daemon.plugins.items():
            key = f"{_table(name)}.plugins.{plugin_name}"
            if is_file_spec(plugin.spec):
                continue
            try:
                model = named_plugin(plugin.spec).Config
            except Exception as exc:  # no such entry point or module, or an import error
                yield f"{key}.spec", f"cannot load {plugin.spec!r}: {exception_text(exc)}"
                continue
            if model is None:
                continue
            try:
                model.model_validate(plugin.config)
            except ValidationError as exc:
                for error in exc.errors(include_url=False, include_input=False,
                                        include_context=False):
                    yield ".".join((f"{key}.config", *map(str, error["loc"]))), error["msg"]


def warnings(suite: SuiteConfig, file: Path) -> Iterator[str]:
    """What a valid config may still get wrong, each as ``key: what and why``."""
    for index, webhook in enumerate(suite.watchdog.webhooks):
        url = urlsplit(webhook.url.reveal())
        if url.scheme == "http" and not _is_local(url.hostname):
            yield (f"watchdog.webhooks.{index}.url: plain http to {url.hostname}: alerts (and "
                   "any token in the url) cross the network unencrypted; use https")
    for name in (*DAEMON_NAMES, WATCHDOG):
        address = suite.daemon(name).control_tcp
        if address is not None and not _is_local(address.rpartition(":")[0].strip("[]")):
            yield (f"{_table(name)}.control_tcp: {address} is reachable beyond this machine over "
                   "plain TCP (no TLS): bind it to a private network or tunnel it")
    yield from _engine_cpu_warnings(suite)
    mode = file.stat().st_mode & 0o777
    if mode & 0o007:  # the group may read it: root:hft 0640 is how the service reads it
        secrets = sorted(_secret_keys(tomllib.loads(file.read_text(encoding="utf-8")), ""))
        if secrets:
            yield (f"{', '.join(secrets)}: secrets in a file every user can read (mode "
                   f"{mode:04o}): chmod o-rwx {file}")


def _engine_cpu_warnings(suite: SuiteConfig) -> Iterator[str]:
    """A pinned engine sharing a CPU with another pinned daemon waits whenever that one runs:
    every tick's orders are late by it (README, "Where the daemons run")."""
    engine = suite.daemon("engine")
    if not engine.enabled or engine.cpu_affinity is None:
        return
    for name in DAEMON_NAMES:
        other = suite.daemon(name)
        if name == "engine" or not other.enabled or other.cpu_affinity is None:
            continue
        shared = sorted(set(engine.cpu_affinity) & set(other.cpu_affinity))
        if shared:
            yield (f"daemons.engine.cpu_affinity: CPU {', '.join(map(str, shared))} is also "
                   f"daemons.{name}'s: the engine waits whenever {name} runs there; give the "
                   "engine a CPU of its own")


def _table(name: str) -> str:
    """A daemon's table in the config: ``daemons.NAME``, or ``watchdog``."""
    return WATCHDOG if name == WATCHDOG else f"daemons.{name}"


def _is_local(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret_keys(node: Any, path: str) -> Iterator[str]:
    """The key paths of secret values in a parsed TOML document: secret-looking keys (not
    ``*_file``: those name a file) and urls carrying a secret-looking query parameter (a
    DingTalk robot's access_token)."""
    if isinstance(node, dict):
        for key, value in node.items():
            inner = f"{path}.{key}" if path else str(key)
            if _holds_secret(str(key), value):
                yield inner
            else:
                yield from _secret_keys(value, inner)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _secret_keys(value, f"{path}.{index}")


def _holds_secret(key: str, value: Any) -> bool:
    if key == "url" and isinstance(value, str):
        return any(is_secret_key(name) for name, _ in parse_qsl(urlsplit(value).query))
    return is_secret_key(key) and not key.endswith("_file")
