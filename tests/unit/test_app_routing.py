"""Routing from ``task_routes`` and ``queue=``, as Celery resolves it."""

from __future__ import annotations

import re
from typing import Any

from celeriac.app import Celeriac
from celeriac.routing import resolve_route


def route(routes: Any, name: str) -> dict[str, Any]:
    return resolve_route(routes, name, (), {}, {})


def test_exact_name_wins_and_plain_string_means_a_queue() -> None:
    assert route({"a.b": "q1", "a.*": {"queue": "q2"}}, "a.b") == {"queue": "q1"}


def test_glob_patterns_match_task_names() -> None:
    routes = {"feed.tasks.*": {"queue": "feeds", "priority": 5}, "*": {"queue": "rest"}}
    assert route(routes, "feed.tasks.import_feed") == {"queue": "feeds", "priority": 5}
    assert route(routes, "other.x") == {"queue": "rest"}


def test_regex_keys_match_like_celery() -> None:
    assert route({re.compile(r"^video\.(encode|decode)$"): "media"}, "video.encode") == {"queue": "media"}
    assert route({re.compile(r"^video\.(encode|decode)$"): "media"}, "video.upload") == {}


def test_list_of_routers_is_tried_in_order_including_callables() -> None:
    def router(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
        return {"queue": "from-callable"} if name.startswith("cb.") else None

    routes = [router, {"cb.*": "never-reached", "x.*": "from-dict"}]
    assert route(routes, "cb.job") == {"queue": "from-callable"}
    assert route(routes, "x.job") == {"queue": "from-dict"}
    assert route(routes, "y.job") == {}


def test_app_route_prefers_explicit_queue_then_routes_then_default() -> None:
    app = Celeriac("r", set_as_current=False, task_routes={"r.routed": "special"}, task_default_queue="dflt")
    assert app.route("r.routed", queue="explicit") == "explicit"
    assert app.route("r.routed") == "special"
    assert app.route("r.other") == "dflt"
