"""Registrars: the ``register`` callables handed to registration hooks (public: use them in
a hookimpl's type hints, ``def register_workers(register: WorkerRegistrar) -> None``).

Each registrar validates what it gets, refuses a name that another plugin registered
already (naming both plugins), and records which plugin registered what, for
``framework plugins``. The plugin host sets ``current_plugin`` before calling each impl.

A refused registration is recorded in ``errors`` rather than raised to the plugin, so that
one bad name does not cost the plugin the rest of its registrations; the host reports the
errors, and ``framework run`` refuses to start while there are any.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Callable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

__all__ = [
    "BackendRegistrar",
    "BusRegistrar",
    "Registration",
    "RegistrationError",
    "RouteRegistrar",
    "ToolSourceRegistrar",
    "WorkerRegistrar",
]

T = TypeVar("T")


class RegistrationError(ValueError):
    """A registration was refused: a bad value, or a name another plugin holds."""


class Registration(NamedTuple):
    """One registered thing: its name, the value, and the plugin that registered it."""

    name: str
    value: Any
    plugin: str


class _Registrar(Generic[T]):
    kind = "thing"

    def __init__(self) -> None:
        self.entries: dict[str, Registration] = {}
        self.errors: list[tuple[str, str]] = []
        """(plugin, message) for every refused registration."""
        self.current_plugin = "(unknown plugin)"

    @contextlib.contextmanager
    def _recording(self) -> Iterator[None]:
        """Record a refusal (``RegistrationError``) instead of letting it reach the plugin."""
        try:
            yield
        except RegistrationError as exc:
            self.errors.append((self.current_plugin, str(exc)))

    def _loaded(self, name: str) -> Any:
        """The value registered as ``name``; one registered by import path is imported
        (a class instantiated without arguments) on first use and kept."""
        entry = self.entries[name]
        value = entry.value
        if isinstance(value, str):
            value = _import_path(value, entry.plugin, f"{self.kind} {name!r}")
            if isinstance(value, type):
                value = value()
            self.entries[name] = Registration(name, value, entry.plugin)
        return value

    def _add(self, name: str, value: T) -> None:
        if not isinstance(name, str) or not name:
            raise RegistrationError(
                f"plugin {self.current_plugin!r} registered a {self.kind} with the name "
                f"{name!r}; a name must be a non-empty string"
            )
        held = self.entries.get(name)
        if held is not None:
            raise RegistrationError(
                f"{self.kind} {name!r} is registered by both plugin {held.plugin!r} and plugin "
                f"{self.current_plugin!r}; uninstall or block one of them (-p no:NAME)"
            )
        self.entries[name] = Registration(name, value, self.current_plugin)

    def names_by_plugin(self, plugin: str) -> list[str]:
        """Names ``plugin`` registered here, in order."""
        return [r.name for r in self.entries.values() if r.plugin == plugin]

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def get(self, name: str) -> T | None:
        """The value registered under ``name``, if any."""
        entry = self.entries.get(name)
        return None if entry is None else entry.value


def kebab_case(name: str) -> str:
    """``EchoWorker`` -> ``echo-worker``: the default registered name of a worker class."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()


class WorkerRegistrar(_Registrar[Any]):
    """``register(WorkerClass, name=None)`` in ``register_workers``.

    A worker may also be registered by its import path, ``register("pkg.workers:Echo",
    name="echo")``: the module is then imported only when a runner needs the class, so
    ``framework plugins`` and ``--help`` never import it. ``resolve`` turns either form into
    the class.
    """

    kind = "worker"

    def __call__(self, worker_class: type | str, name: str | None = None) -> None:
        with self._recording():
            self._register(worker_class, name)

    def _register(self, worker_class: type | str, name: str | None) -> None:
        if isinstance(worker_class, str):
            _check_path(worker_class, name, self.current_plugin, "worker")
            assert name is not None
            self._add(name, worker_class)
            return
        self._add(name or default_worker_name(worker_class, self.current_plugin), worker_class)

    def resolve(self, name: str) -> type:
        """The worker class registered as ``name``, importing it when registered by path.

        Raises:
            KeyError: nothing is registered as ``name``.
            RegistrationError: the path does not import, or is not a ``BaseWorker``
                subclass (the message names the plugin).
        """
        entry = self.entries[name]
        value = entry.value
        if isinstance(value, str):
            value = _import_path(value, entry.plugin, f"worker {name!r}")
            _check_worker_class(value, entry.plugin)
            self.entries[name] = Registration(name, value, entry.plugin)
        assert isinstance(value, type)
        return value


def _check_path(path: str, name: str | None, plugin: str, kind: str) -> None:
    module, _, attribute = path.partition(":")
    if not module or not attribute:
        raise RegistrationError(
            f"plugin {plugin!r} registered the {kind} {path!r}; an import path is "
            "'package.module:Name'"
        )
    if name is None:
        raise RegistrationError(
            f"plugin {plugin!r} registered {path!r} without a name; a {kind} registered by "
            'its import path needs name="..."'
        )


def _import_path(path: str, plugin: str, what: str) -> Any:
    module_name, _, attribute = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:
        from framework._tracebacks import where

        raise RegistrationError(
            f"plugin {plugin!r} registered {what} as {path!r}, which cannot be imported: "
            f"{type(exc).__name__}: {exc}{where(exc)}"
        ) from exc


def _check_worker_class(worker_class: object, plugin: str) -> None:
    from framework.worker import BaseWorker

    if not (isinstance(worker_class, type) and issubclass(worker_class, BaseWorker)):
        raise RegistrationError(
            f"plugin {plugin!r} registered {worker_class!r} as a worker; "
            "register a subclass of framework.BaseWorker"
        )


def default_worker_name(worker_class: object, plugin: str) -> str:
    """Check a worker class and give its default registered name."""
    _check_worker_class(worker_class, plugin)
    assert isinstance(worker_class, type)
    name = getattr(worker_class, "worker_name", None)
    return name if isinstance(name, str) and name else kebab_case(worker_class.__name__)


class BusRegistrar(_Registrar[Callable[..., Any]]):
    """``register("scheme", factory)`` in ``register_buses``; ``factory(url)`` makes a bus,
    and a factory that also takes a ``secret`` keyword is given the bus secrets (see
    ``register_buses``)."""

    kind = "bus scheme"

    def __call__(self, scheme: str, factory: Callable[..., Any]) -> None:
        with self._recording():
            self._register(scheme, factory)

    def _register(self, scheme: str, factory: Callable[..., Any]) -> None:
        if not callable(factory):
            raise RegistrationError(
                f"plugin {self.current_plugin!r} registered bus scheme {scheme!r} with "
                f"{factory!r}; pass a callable taking the bus URL"
            )
        if isinstance(scheme, str) and not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
            raise RegistrationError(
                f"plugin {self.current_plugin!r} registered bus scheme {scheme!r}; a scheme is "
                "lower-case letters, digits, '+', '.' or '-' (like 'redis')"
            )
        self._add(scheme, factory)


class BackendRegistrar(_Registrar[Any]):
    """``register(backend, name=None)`` in ``register_llm_backends``.

    A backend may also be registered by the import path of an object or a class
    (instantiated without arguments), ``register("pkg.backend:OpenAIBackend",
    name="openai")``, imported only when a worker uses it; ``resolve`` returns the backend.
    """

    def resolve(self, name: str) -> Any:
        """The backend registered as ``name``, imported (and instantiated) when registered
        by path. Raises ``KeyError`` or ``RegistrationError`` (naming the plugin)."""
        return self._loaded(name)

    kind = "LLM backend"

    def __call__(self, backend: Any, name: str | None = None) -> None:
        with self._recording():
            self._register(backend, name)

    def _register(self, backend: Any, name: str | None) -> None:
        if isinstance(backend, str):
            _check_path(backend, name, self.current_plugin, "LLM backend")
        if name is None:
            name = getattr(backend, "name", None)
        if name is None:
            raise RegistrationError(
                f"plugin {self.current_plugin!r} registered the LLM backend {backend!r} "
                "without a name; pass name=\"...\" or give it a 'name' attribute"
            )
        self._add(name, backend)


RESERVED_PREFIXES = ("/v1", "/metrics", "/openapi.json", "/static")
"""Paths the HTTP API serves itself: no plugin may mount an app under them."""

_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")


class RouteRegistrar(_Registrar[Any]):
    """``register(prefix, app, public=False)`` in ``register_routes``: an ASGI app mounted
    under ``prefix`` in the HTTP API (``"/mcp"``, ``"/a2a"``).

    ``public=True`` lets requests under the prefix through without the API's token: for
    discovery documents that clients read before they authenticate (an A2A agent card at
    ``/.well-known/agent-card.json``). Everything else stays behind the token.
    """

    kind = "route prefix"

    def __init__(self) -> None:
        super().__init__()
        self.public: set[str] = set()
        """The prefixes registered with ``public=True``."""

    def __call__(self, prefix: str, app: Any, *, public: bool = False) -> None:
        with self._recording():
            self._register(prefix, app)
            if public:
                self.public.add(prefix)

    def _register(self, prefix: str, app: Any) -> None:
        plugin = self.current_plugin
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
            raise RegistrationError(
                f"plugin {plugin!r} registered the route prefix {prefix!r}; a prefix is a "
                "path with a leading '/' and no trailing one, such as '/mcp'"
            )
        for reserved in RESERVED_PREFIXES:
            if prefix == reserved or prefix.startswith(reserved + "/"):
                raise RegistrationError(
                    f"plugin {plugin!r} registered the route prefix {prefix!r}, which the "
                    f"HTTP API serves itself ({', '.join(RESERVED_PREFIXES)}); pick another"
                )
        for held in self.entries.values():
            inner, outer = sorted((held.name, prefix), key=len, reverse=True)
            if inner != outer and inner.startswith(outer + "/"):
                raise RegistrationError(
                    f"route prefix {prefix!r} of plugin {plugin!r} overlaps {held.name!r} of "
                    f"plugin {held.plugin!r}; uninstall or block one of them (-p no:NAME)"
                )
        if not callable(app):
            raise RegistrationError(
                f"plugin {plugin!r} registered {type(app).__name__} under {prefix!r}; the app "
                "must be an ASGI application (a callable such as a Starlette app)"
            )
        self._add(prefix, app)


_SOURCE_PREFIX = re.compile(r"[a-z][a-z0-9_-]*")


class ToolSourceRegistrar(_Registrar[Any]):
    """``register(prefix, source)`` in ``register_tool_sources``: where an LLM worker's
    ``tools = ["PREFIX:NAME"]`` entries come from (``framework.llm.ToolSource``).

    ``source`` may also be an import path, ``register("mcp", "pkg.tools:Source")``, of an
    object or a class (instantiated without arguments), imported only when a worker or
    ``framework run``'s checks need it; ``resolve`` returns the source.
    """

    kind = "tool source"

    def __call__(self, prefix: str, source: Any) -> None:
        with self._recording():
            self._register(prefix, source)

    def _register(self, prefix: str, source: Any) -> None:
        plugin = self.current_plugin
        if not isinstance(prefix, str) or not _SOURCE_PREFIX.fullmatch(prefix):
            raise RegistrationError(
                f"plugin {plugin!r} registered the tool source prefix {prefix!r}; a prefix is "
                "lower-case letters, digits, '_' or '-', starting with a letter (like 'mcp')"
            )
        if isinstance(source, str):
            _check_path(source, prefix, plugin, "tool source")
        elif not callable(getattr(source, "tools", None)):
            raise RegistrationError(
                f"plugin {plugin!r} registered {source!r} as the tool source {prefix!r}; a "
                "tool source has the methods of framework.llm.ToolSource (check, tools)"
            )
        self._add(prefix, source)

    def resolve(self, prefix: str) -> Any:
        """The source registered as ``prefix``, imported (and instantiated) when registered
        by path. Raises ``KeyError`` or ``RegistrationError`` (naming the plugin)."""
        return self._loaded(prefix)
