"""The application: settings, the task registry, routing and sending.

``Celeriac`` (alias ``Celery``) mirrors Celery's app closely enough that migrating is
an import change. The broker and the result backend are opened lazily, once per
process, so an app imported before a fork works in the child.
"""

from __future__ import annotations

import importlib
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar, overload

from celeriac import protocol
from celeriac.backend import RedisBackend
from celeriac.config import Settings, as_seconds
from celeriac.exceptions import NotRegistered
from celeriac.result import AsyncResult, revoke
from celeriac.routing import resolve_route
from celeriac.signature import signature_list
from celeriac.task import Task, current_task

F = TypeVar("F", bound=Callable[..., Any])

TASK_OPTIONS = frozenset(
    {
        "name",
        "bind",
        "queue",
        "max_retries",
        "default_retry_delay",
        "autoretry_for",
        "dont_autoretry_for",
        "retry_kwargs",
        "retry_backoff",
        "retry_backoff_max",
        "retry_jitter",
        "time_limit",
        "soft_time_limit",
        "rate_limit",
        "ignore_result",
        "store_errors_even_if_ignored",
        "acks_late",
        "reject_on_worker_lost",
        "track_started",
        "serializer",
        "priority",
        "expires",
        "throws",
        "typing",
    }
)
"""Options ``app.task(...)`` accepts (DESIGN §3); anything else is a TypeError."""


class TaskRegistry(dict[str, Task]):
    """name -> Task; a missing name raises :class:`NotRegistered`, ``get`` returns None."""

    def __missing__(self, key: str) -> Task:
        raise NotRegistered(key)


_apps: weakref.WeakSet[Celeriac] = weakref.WeakSet()
_current: list[Celeriac] = []  # at most one: the current app
_shared: list[Callable[[Celeriac], Task]] = []
_lock = threading.RLock()


def current_app() -> Celeriac:
    """The app set as current (the last one created), or a default app made on demand."""
    with _lock:
        if not _current:
            Celeriac("default")
        return _current[-1]


class Celeriac:
    """A Celery-compatible application."""

    def __init__(
        self,
        main: str | None = None,
        broker: str | None = None,
        backend: str | None = None,
        *,
        include: Sequence[str] = (),
        config_source: object | str | None = None,
        set_as_current: bool = True,
        **settings: Any,
    ) -> None:
        self.main = main
        self.conf = Settings()
        if config_source is not None:
            self.conf.from_object(config_source)
        if broker:
            self.conf.broker_url = broker
        if backend:
            self.conf.result_backend = backend
        if include:
            self.conf.include = tuple(include)
        self.conf.update(settings)
        self._tasks = TaskRegistry()
        self._finalized = False
        self._autodiscover: list[tuple[tuple[str, ...], str]] = []
        self._broker: Any = None
        self._backend: RedisBackend | None = None
        self._pid = os.getpid()
        self._inherited: list[Any] = []
        self.oid = str(uuid.uuid4())
        """Client id used as ``reply_to`` (Celery uses it for the rpc backend only)."""
        from celeriac.builtins import register_builtins  # lazily: builtins use the canvas

        register_builtins(self)
        with _lock:
            _apps.add(self)
            if set_as_current:
                _current[:] = [self]
            for make in _shared:
                make(self)

    def __repr__(self) -> str:
        return f"<Celeriac {self.main or '__main__'}>"

    # Configuration
    def config_from_object(self, obj: object | str, namespace: str | None = None, force: bool = False) -> None:
        """Load settings from an object or import path; ``namespace="CELERY"`` reads ``CELERY_*``."""
        self.conf.from_object(obj, namespace=namespace)
        self._backend = None
        self._broker = None

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    # Tasks
    @overload
    def task(self, fun: F) -> Task: ...
    @overload
    def task(
        self, *, name: str | None = None, base: type[Task] | None = None, **options: Any
    ) -> Callable[[F], Task]: ...
    def task(self, *args: Any, **options: Any) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(bind=True, queue="q")``."""
        if len(args) == 1 and callable(args[0]) and not options:
            return self._task_from_fun(args[0])
        if args:
            raise TypeError("app.task() takes options as keywords only, e.g. @app.task(name='x')")

        def decorate(fun: F) -> Task:
            return self._task_from_fun(fun, **options)

        return decorate

    def _task_from_fun(
        self, fun: Callable[..., Any], name: str | None = None, base: type[Task] | None = None, **options: Any
    ) -> Task:
        unknown = set(options) - TASK_OPTIONS
        if unknown:
            raise TypeError(f"unknown task option(s) {sorted(unknown)}; valid: {sorted(TASK_OPTIONS)}")
        name = name or self.gen_task_name(fun)
        if name in self._tasks:
            return self._tasks[name]
        cls = type(
            getattr(fun, "__name__", "task"),
            (base or Task,),
            {"__doc__": fun.__doc__, "__module__": fun.__module__},
        )
        task: Task = cls()
        task.name = name
        task.app = self
        task._fun = fun
        for key, value in options.items():
            if key in {"autoretry_for", "dont_autoretry_for", "throws"}:
                setattr(task, key, tuple(value))
            else:
                setattr(task, key, dict(value) if key == "retry_kwargs" else value)
        self._tasks[name] = task
        return task

    def register_task(self, task: Task | type[Task]) -> Task:
        """Register a class-based task (a Task subclass with ``run``)."""
        instance = task() if isinstance(task, type) else task
        if not instance.name:
            instance.name = f"{type(instance).__module__}.{type(instance).__name__}"
        instance.app = self
        self._tasks[instance.name] = instance
        return instance

    def gen_task_name(self, fun: Callable[..., Any]) -> str:
        """Celery's naming: ``<module>.<function>``, with ``__main__`` replaced by the app's name."""
        module = fun.__module__
        if module == "__main__" and self.main:
            module = self.main
        return f"{module}.{fun.__name__}"

    @property
    def tasks(self) -> TaskRegistry:
        """The registry; first access imports ``include``/``imports`` and autodiscovered modules."""
        self.finalize()
        return self._tasks

    def finalize(self) -> None:
        if self._finalized:
            return
        self._finalized = True
        for module in (*self.conf.imports, *self.conf.include):
            importlib.import_module(module)
        for packages, related_name in self._autodiscover:
            self._import_related(packages, related_name)

    def autodiscover_tasks(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]] = (),
        related_name: str = "tasks",
        force: bool = False,
    ) -> None:
        """Import ``<package>.<related_name>`` for each package: now if ``force``, else on finalize."""
        names = tuple(packages() if callable(packages) else packages)
        if force or self._finalized:
            self._import_related(names, related_name)
        else:
            self._autodiscover.append((names, related_name))

    @staticmethod
    def _import_related(packages: Iterable[str], related_name: str) -> None:
        for package in packages:
            try:
                importlib.import_module(f"{package}.{related_name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{related_name}":
                    raise

    # Routing
    def route_options(
        self,
        task_name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What ``task_routes`` says for this call (queue, exchange, routing_key, priority...)."""
        return resolve_route(self.conf.task_routes, task_name, tuple(args), dict(kwargs or {}), dict(options or {}))

    def route(self, task_name: str, queue: str | None = None) -> str:
        """The queue a call of ``task_name`` goes to: ``queue=``, then task_routes, then the default."""
        if queue:
            return queue
        routed = self.route_options(task_name).get("queue")
        return str(routed or self.conf.task_default_queue)

    # Connections
    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            # The parent's sockets are not ours to use or close. Their clients stay referenced so
            # that their finalizers never run here: closing takes redis-py pool locks that another
            # of the parent's threads may have held when it forked, and this process would wait
            # for them forever (seen with prefork children replaced under load).
            self._inherited.extend(client for client in (self._broker, self._backend) if client is not None)
            self._broker = None
            self._backend = None

    @property
    def broker(self) -> Any:
        """The broker (H2's :func:`celeriac.brokers.connect`), opened on first use per process."""
        self._check_fork()
        if self._broker is None:
            from celeriac.brokers import connect  # lazily: the broker layer is optional at import

            self._broker = connect(self.conf.broker_url, self.conf.broker_transport_options)
        return self._broker

    @property
    def backend(self) -> RedisBackend:
        """The Redis result backend, opened on first use per process."""
        self._check_fork()
        if self._backend is None:
            conf = self.conf
            self._backend = RedisBackend(
                conf.result_backend,
                serializer=conf.result_serializer,
                accept=conf.result_accept,
                expires_s=as_seconds(conf.result_expires, "result_expires"),
                transport_options=conf.result_backend_transport_options,
                extended=bool(conf.result_extended),
            )
            self._backend.app = self
        return self._backend

    def close(self) -> None:
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # Sending
    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
        expires: float | datetime | str | None = None,
        link: Any = None,
        link_error: Any = None,
        add_to_parent: bool = True,
        group_id: str | None = None,
        group_index: int | None = None,
        retries: int = 0,
        chord: Any = None,
        reply_to: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        shadow: str | None = None,
        chain: Any = None,
        queue: str | None = None,
        exchange: str | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        headers: Mapping[str, Any] | None = None,
        serializer: str | None = None,
        ignore_result: bool | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Publish a call of task ``name`` (registered here or not) and return its result handle."""
        task_id = task_id or str(uuid.uuid4())
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        if queue is None and exchange is None:
            route = self.route_options(name, args, kwargs, options)
            queue = route.get("queue")
            exchange = route.get("exchange")
            routing_key = routing_key or route.get("routing_key")
            if priority is None:
                priority = route.get("priority")
        if exchange is None or exchange == "" or not routing_key:
            exchange, queue = "", queue or routing_key or self.conf.task_default_queue
            routing_key = queue
        if priority is None:
            priority = self.conf.task_default_priority
        parent = current_task()
        if parent is not None:
            parent_context = parent[1]
            root_id = root_id or parent_context.root_id or parent_context.id
            parent_id = parent_id or parent_context.id
            if priority is None and self.conf.task_inherit_parent_priority:
                priority = parent_context.delivery_info.get("priority")
        message = protocol.build_task_message(
            task_id,
            name,
            args,
            kwargs,
            countdown=countdown,
            eta=eta,
            expires=expires,
            group_id=group_id,
            group_index=group_index,
            retries=retries,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            root_id=root_id,
            parent_id=parent_id,
            shadow=shadow,
            callbacks=_dicts(signature_list(link)),
            errbacks=_dicts(signature_list(link_error)),
            chain=list(chain) if chain else None,
            chord=chord,
            ignore_result=ignore_result,
            reply_to=reply_to or self.oid,
            headers=headers,
            serializer=serializer or self.conf.task_serializer,
            origin=options.get("origin"),
            extra_properties={"origin": options["origin"]} if options.get("origin") else None,
            compression=options.get("compression") or self.conf.task_compression,
            stamped_headers=options.get("stamped_headers"),
            stamps=options.get("stamps"),
            replaced_task_nesting=int(options.get("replaced_task_nesting", 0)),
        )
        backend = self._backend
        if backend is not None and not ignore_result:
            # Before the publish, so the result's publish cannot precede the subscription; the
            # backend skips threads that never waited and a parent's connection after a fork.
            backend.subscribe_early(task_id)
        self.broker.publish(
            message,
            queue=queue,
            exchange=exchange or "",
            routing_key=routing_key,
            priority=int(priority or 0),
        )
        result = AsyncResult(task_id, app=self, task_name=name)
        if add_to_parent and parent is not None:
            parent[1].children.append(result)
        return result

    # Results and control
    def AsyncResult(self, task_id: str, task_name: str | None = None) -> AsyncResult:
        return AsyncResult(task_id, app=self, task_name=task_name)

    def revoke(self, task_id: str | Sequence[str], terminate: bool = False, signal: str | None = None) -> None:
        """Broadcast a pidbox ``revoke`` to every worker (Celery's ``app.control.revoke``)."""
        revoke(self, task_id, terminate=terminate, signal=signal)


Celery = Celeriac


def _dicts(signatures: list[Any] | None) -> list[dict[str, Any]] | None:
    return [dict(item) for item in signatures] if signatures else None


def shared_task(*args: Any, **options: Any) -> Any:
    """``@shared_task``: a task registered in every app, used through the current app."""

    def decorate(fun: Callable[..., Any]) -> Task:
        def make(app: Celeriac) -> Task:
            return app._task_from_fun(fun, **options)

        with _lock:
            _shared.append(make)
            apps = list(_apps)
        for app in apps:
            make(app)
        return make(current_app())

    if len(args) == 1 and callable(args[0]) and not options:
        return decorate(args[0])
    return decorate
