"""Routing: which queue a call goes to, from ``task_routes`` as Celery reads it.

``task_routes`` is a dict (exact names, glob patterns, compiled regexes), a callable
``(name, args, kwargs, options, task=None)``, an import path of one, or a list of those
tried in order. A route value is a queue name or a dict of options (``queue``,
``exchange``, ``routing_key``, ``priority``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from celeriac.config import load_object


def resolve_route(
    routes: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    """The first route that matches ``name``, as a dict; ``{}`` when none does.

    A route value may be a queue name or a dict of options. Callables are called as
    Celery calls them: ``(name, args, kwargs, options, task=None)``.
    """
    if not routes:
        return {}
    for router in routes if isinstance(routes, (list, tuple)) else [routes]:
        found = _match(router, name, args, kwargs, options)
        if found is not None:
            return {"queue": found} if isinstance(found, str) else dict(found)
    return {}


def _match(router: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> Any:
    if isinstance(router, str):
        router = load_object(router)
    if callable(router) and not isinstance(router, Mapping):
        return router(name, args, kwargs, options, task=None)
    if isinstance(router, Mapping):
        if name in router:
            return router[name]
        for pattern, value in router.items():
            if isinstance(pattern, re.Pattern):
                if pattern.match(name):
                    return value
            elif fnmatch.fnmatchcase(name, pattern):
                return value
        return None
    raise TypeError(f"task_routes entries must be dicts or callables, got {type(router).__name__}")
