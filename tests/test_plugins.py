"""PluginManager in a real (not running) DaemonHost: lifecycle, isolation of failures, reload."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import EventType
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.plugins import PluginManager, PluginState

# A plugin that hooks everything a context offers and records its lifecycle in
# config["calls"] (a list shared with the test, since the config is passed through as is).
RECORDER = """
from hft.daemons.runtime.events import EventType
from hft.daemons.runtime.plugins import Plugin

VERSION = {version!r}

class Recorder(Plugin):
    def init(self, ctx):
        super().init(ctx)
        ctx.subscribe(EventType.MARKET_DATA, self.on_tick)
        ctx.add_poller(self.poll)
        ctx.call_every(60, self.poll)
        ctx.config["calls"].append((ctx.name, VERSION, "init"))
        {fail_in_init}

    def start(self):
        self.ctx.config["calls"].append((self.ctx.name, VERSION, "start"))
        {fail_in_start}

    def stop(self):
        self.ctx.config["calls"].append((self.ctx.name, VERSION, "stop"))

    def on_tick(self, record):
        self.ctx.config["calls"].append((self.ctx.name, VERSION, "tick"))

    def poll(self):
        return 0
"""


def recorder(path: Path, version: str = "v1", fail_in_init: str = "",
             fail_in_start: str = "") -> str:
    path.write_text(RECORDER.format(version=version, fail_in_init=fail_in_init,
                                    fail_in_start=fail_in_start))
    return str(path)


@pytest.fixture
def host() -> DaemonHost:
    return DaemonHost("engine", SuiteConfig())


def hooks(host: DaemonHost) -> tuple[int, int, int]:
    return len(host.bus.handlers(EventType.MARKET_DATA)), len(host.pollers), len(host.timers)


def test_load_runs_init_and_start_and_unload_releases_every_hook(
        host: DaemonHost, tmp_path: Path) -> None:
    calls: list[tuple[str, str, str]] = []
    entry = host.plugins.load("rec", recorder(tmp_path / "rec.py"), {"calls": calls})
    assert (entry.state, entry.error) == (PluginState.RUNNING, "")
    assert hooks(host) == (1, 1, 1)
    host.bus.publish(EventType.MARKET_DATA, None)
    host.plugins.unload("rec")
    assert hooks(host) == (0, 0, 0)
    assert calls == [("rec", "v1", "init"), ("rec", "v1", "start"), ("rec", "v1", "tick"),
                     ("rec", "v1", "stop")]
    assert list(host.plugins) == []


@pytest.mark.parametrize(("fail_in_init", "fail_in_start", "step"), [
    ("raise RuntimeError('boom')", "", "init"),
    ("", "raise RuntimeError('boom')", "start"),
])
def test_init_or_start_raising_is_failed_and_its_hooks_released(
        host: DaemonHost, tmp_path: Path, fail_in_init: str, fail_in_start: str,
        step: str) -> None:
    spec = recorder(tmp_path / "bad.py", fail_in_init=fail_in_init, fail_in_start=fail_in_start)
    entry = host.plugins.load("bad", spec, {"calls": []})
    assert entry.state is PluginState.FAILED
    assert entry.error == f"{step} failed: RuntimeError: boom"
    assert hooks(host) == (0, 0, 0)
    host.plugins.unload("bad")  # a failed plugin can be unloaded like any other


def test_import_error_is_failed_with_its_reason(host: DaemonHost, tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("import module_that_does_not_exist\n")
    entry = host.plugins.load("broken", str(path))
    assert entry.state is PluginState.FAILED
    assert entry.error.startswith("load failed: ModuleNotFoundError")
    missing = host.plugins.load("missing", str(tmp_path / "nope.py"))
    assert "does not exist" in missing.error
    unknown = host.plugins.load("unknown", "no_such_entry_point")
    assert "no entry point 'no_such_entry_point'" in unknown.error


def test_config_model_validates_the_plugin_config(host: DaemonHost, tmp_path: Path) -> None:
    path = tmp_path / "typed.py"
    path.write_text(textwrap.dedent("""
        import pydantic
        from hft.daemons.runtime.plugins import Plugin

        class Typed(Plugin):
            class Config(pydantic.BaseModel):
                model_config = pydantic.ConfigDict(extra="forbid")
                depth: int = 5

            def init(self, ctx):
                super().init(ctx)
                assert ctx.config.depth == 3
    """))
    assert host.plugins.load("good", str(path), {"depth": 3}).state is PluginState.RUNNING
    bad = host.plugins.load("bad", str(path), {"dept": 3})
    assert bad.state is PluginState.FAILED
    assert bad.error == "config failed: PluginConfigError: Config: dept: Extra inputs are not permitted"


def test_a_file_with_two_plugins_needs_the_class_named(host: DaemonHost, tmp_path: Path) -> None:
    path = tmp_path / "two.py"
    path.write_text("from hft.daemons.runtime.plugins import Plugin\n"
                    "class A(Plugin): pass\nclass B(Plugin): pass\n")
    assert "name one as 'file.py:Class'" in host.plugins.load("ab", str(path)).error
    assert host.plugins.load("b", f"{path}:B").state is PluginState.RUNNING
    assert "has no attribute 'C'" in host.plugins.load("c", f"{path}:C").error


def test_module_spec_and_reload_picks_up_new_code(
        host: DaemonHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # importlib.reload may use stale bytecode
    monkeypatch.syspath_prepend(str(tmp_path))
    recorder(tmp_path / "hft_test_reload_mod.py", version="v1")
    monkeypatch.delitem(sys.modules, "hft_test_reload_mod", raising=False)
    calls: list[tuple[str, str, str]] = []
    host.plugins.load("rec", "hft_test_reload_mod:Recorder", {"calls": calls})
    recorder(tmp_path / "hft_test_reload_mod.py", version="v2-longer")
    entry = host.plugins.reload("rec")
    assert (entry.state, entry.error) == (PluginState.RUNNING, "")
    # reload re-executes the module in place, so the old instance's stop already sees v2
    assert [step for _, _, step in calls] == ["init", "start", "stop", "init", "start"]
    assert calls[-1] == ("rec", "v2-longer", "start")
    assert hooks(host) == (1, 1, 1)  # the old instance's hooks are gone, the new ones are in
    sys.modules.pop("hft_test_reload_mod")


def test_reload_of_a_file_rewritten_at_once_with_the_same_size_runs_the_new_code(
        host: DaemonHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as in production
    calls: list[tuple[str, str, str]] = []
    path = tmp_path / "rec.py"
    host.plugins.load("rec", recorder(path, version="v1"), {"calls": calls})
    size = path.stat().st_size
    recorder(path, version="v2")
    assert path.stat().st_size == size
    host.plugins.reload("rec")
    assert calls[-1] == ("rec", "v2", "start")
    assert not (tmp_path / "__pycache__").exists()


def test_reload_of_code_that_does_not_import_keeps_the_old_instance(
        host: DaemonHost, tmp_path: Path) -> None:
    calls: list[tuple[str, str, str]] = []
    spec = recorder(tmp_path / "rec.py")
    host.plugins.load("rec", spec, {"calls": calls})
    (tmp_path / "rec.py").write_text("def broken(:\n")
    entry = host.plugins.reload("rec")
    assert entry.state is PluginState.RUNNING
    assert entry.error.startswith("reload failed: SyntaxError")
    host.bus.publish(EventType.MARKET_DATA, None)
    assert calls[-1] == ("rec", "v1", "tick")  # the old instance still handles events
    recorder(tmp_path / "rec.py", version="v3")
    entry = host.plugins.reload("rec")
    assert (entry.state, entry.error) == (PluginState.RUNNING, "")
    assert calls[-1] == ("rec", "v3", "start")


def test_stop_all_stops_in_reverse_load_order(host: DaemonHost, tmp_path: Path) -> None:
    calls: list[tuple[str, str, str]] = []
    spec = recorder(tmp_path / "rec.py")
    for name in ("first", "second", "third"):
        host.plugins.load(name, spec, {"calls": calls})
    host.plugins.stop_all()
    assert [c[0] for c in calls if c[2] == "stop"] == ["third", "second", "first"]
    assert {p.state for p in host.plugins} == {PluginState.STOPPED}


def test_names_are_unique_and_unknown_names_are_reported(host: DaemonHost,
                                                          tmp_path: Path) -> None:
    manager: PluginManager = host.plugins
    spec = recorder(tmp_path / "rec.py")
    manager.load("rec", spec, {"calls": []})
    with pytest.raises(ValueError, match="already loaded"):
        manager.load("rec", spec, {"calls": []})
    with pytest.raises(KeyError, match=r"no plugin named 'other'; loaded: \['rec'\]"):
        manager.unload("other")


def test_a_host_starts_its_plugins_only_after_every_init(host: DaemonHost, tmp_path: Path) -> None:
    calls: list[tuple[str, str, str]] = []
    for name in ("first", "second"):
        entry = host.plugins.load(name, recorder(tmp_path / f"{name}.py"), {"calls": calls},
                                  start=False)
        assert entry.state is PluginState.INITIALIZED
    host.plugins.start_all()
    assert [(name, step) for name, _, step in calls] == [
        ("first", "init"), ("second", "init"), ("first", "start"), ("second", "start")]
    assert {p.state for p in host.plugins} == {PluginState.RUNNING}


SOON = """
from hft.daemons.runtime.plugins import Plugin

class Soon(Plugin):
    def start(self):
        self.ctx.call_soon(lambda: self.ctx.config["calls"].append("soon"))
"""


def test_call_soon_runs_once_at_the_loops_next_turn(host: DaemonHost, tmp_path: Path) -> None:
    (tmp_path / "soon.py").write_text(SOON)
    calls: list[str] = []
    host.plugins.load("soon", str(tmp_path / "soon.py"), {"calls": calls})
    assert calls == [] and len(host.timers) == 1  # not from start() itself
    for _ in range(2):
        host.timers.run_due(time.monotonic_ns())
    assert calls == ["soon"] and len(host.timers) == 0  # once, and its timer is gone
