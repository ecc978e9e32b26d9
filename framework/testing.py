"""Helpers and a pytest plugin for plugin authors (entry point ``pytest11``: it is active in
every pytest run of an environment where agent-plugin-framework is installed). So that
being installed costs a pytest session nothing, the module imports nothing of the
framework at the top (``MemoryPublisher`` is imported on first use); the plugin host and
the runtime (anyio, pydantic, the runner) are imported when a fixture or function runs.
Every fixture's name starts with ``framework_``, so none takes a name a project uses.

Fixtures:

- ``framework_plugins``: the plugin objects the ``framework_runner`` fixture registers.
  Override it in a test module or a ``conftest.py`` to return your plugin module or objects.
- ``framework_host``: a fresh ``PluginHost`` with the built-ins only (installed entry-point
  plugins never leak in). ``framework_host.register(my_plugin)`` registers a plugin object
  for one test; ``framework_host.collect_registrations()`` then fills
  ``framework_host.workers``, ``.buses`` and ``.llm_backends``.
- ``framework_runner``: an async fixture (tests marked ``@pytest.mark.anyio``): a started
  ``WorkerRunner`` on the in-process bus with ``framework_plugins`` registered and every
  worker they register added under its registered name. It ends after the test.
- ``framework_events``: the ``MemoryPublisher`` registered on ``framework_runner``; its
  ``events`` list holds every event of the run.

An async test that forgets ``@pytest.mark.anyio`` fails at setup with a message saying to
add it (when it uses ``framework_runner``, or when no other plugin, like pytest-asyncio,
runs async tests).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framework.builtins.memory import MemoryPublisher
    from framework.plugins import PluginHost
    from framework.runner import WorkerRunner

__all__ = ["MemoryPublisher", "build_runner", "make_host"]


def __getattr__(name: str) -> Any:
    """``MemoryPublisher``, imported on first use."""
    if name == "MemoryPublisher":
        from framework.builtins.memory import MemoryPublisher

        return MemoryPublisher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_host(*plugins: object) -> PluginHost:
    """A ``PluginHost`` with the built-ins and ``plugins`` only (no entry points)."""
    from framework.plugins import PluginHost, PluginSelection

    host = PluginHost(PluginSelection(autoload=False), report=False)
    for plugin in plugins:
        host.register(plugin)
    return host


async def build_runner(host: PluginHost, *plugins: object) -> WorkerRunner:
    """A runner on the in-process bus, not started, hosting every worker ``host``
    registered (under its registered name; one that needs settings is left out, with a
    warning on stderr), with ``plugins`` registered on top, and configured by the
    ``configure_runner`` hooks with the default ``RunConfig``.

    Start it with ``async with``.
    """
    from framework._run_command import configure, every_registered_worker
    from framework.config import RunConfig
    from framework.runner import WorkerRunner

    host.collect_registrations()
    if host.registration_errors:
        raise RuntimeError("; ".join(host.registration_errors))
    runner = WorkerRunner(
        "test-runner",
        plugin_manager=host.pm,
        plugins=plugins,
        grace_period=1.0,
        llm_backends=host.llm_backends,
        routes=host.routes,
        tool_sources=host.tool_sources,
    )
    for worker in every_registered_worker(host):
        await runner.add_worker(worker)
    await configure(runner, RunConfig())
    return runner


try:  # the fixtures need pytest; make_host and build_runner work without it
    import pytest
except ImportError:  # pragma: no cover - pytest is how this module is usually loaded
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def framework_plugins() -> list[Any]:
        """Plugin objects for the ``framework_runner`` fixture; override to return your
        plugin(s)."""
        return []

    @pytest.fixture
    def framework_host() -> PluginHost:
        """A fresh plugin host with the built-ins only, for registering plugins in one test."""
        return make_host()

    @pytest.fixture
    def framework_events() -> MemoryPublisher:
        """The publisher that records the ``framework_runner`` fixture's events."""
        from framework.builtins.memory import MemoryPublisher

        return MemoryPublisher()

    @pytest.fixture
    async def framework_runner(
        framework_plugins: list[Any], framework_events: MemoryPublisher
    ) -> AsyncIterator[WorkerRunner]:
        """A started runner hosting every worker that ``framework_plugins`` register."""
        test_runner = await build_runner(make_host(*framework_plugins), framework_events)
        async with test_runner:
            yield test_runner

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(item: pytest.Item) -> None:
        """An async test without ``@pytest.mark.anyio``: say so, instead of the generic
        error about async functions or fixtures that pytest gives."""
        message = missing_anyio_marker(item)
        if message is not None:
            pytest.fail(message, pytrace=False)


def missing_anyio_marker(item: Any) -> str | None:
    """The error for a test item that is an async function nobody will run: no ``anyio``
    marker and no ``anyio_backend`` fixture, and it uses ``framework_runner`` or no
    pytest-asyncio is there to run it. None when it is fine."""
    function = getattr(item, "obj", None)
    if function is None or not inspect.iscoroutinefunction(function):
        return None
    names = set(getattr(item, "fixturenames", ()))
    if item.get_closest_marker("anyio") is not None or "anyio_backend" in names:
        return None
    ours = "framework_runner" in names
    if not ours and item.config.pluginmanager.has_plugin("asyncio"):
        return None  # pytest-asyncio runs it
    fixture = " and its async fixture framework_runner" if ours else ""
    return (
        f"{item.nodeid} is an async test without @pytest.mark.anyio: add the marker (or "
        "'pytestmark = pytest.mark.anyio' at the top of the module) so that anyio's pytest "
        f"plugin runs the test{fixture}"
    )
