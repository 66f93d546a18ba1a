"""The node agent's pure parts: Kubernetes $(VAR) expansion and the per-pod port mapping of arguments."""

from __future__ import annotations

from node_agent_env import expand, remap_ports


def test_expand_replaces_known_variables_keeps_unknown_ones_and_unescapes_double_dollar() -> None:
    env = {"POD_NAMESPACE": "ns", "NAME": "beat"}
    assert expand("$(POD_NAMESPACE)/$(NAME)", env) == "ns/beat"
    assert expand("$(MISSING)-x", env) == "$(MISSING)-x"
    assert expand("$$(POD_NAMESPACE) costs $$5", env) == "$(POD_NAMESPACE) costs $5"


def test_remap_ports_rewrites_port_flag_values_naming_a_declared_container_port() -> None:
    ports = {9808: 41234, 8080: 41235}
    argv = ["celeriac", "worker", "-c", "9808", "--health-port", "9808", "--liveness-port=8080", "--port", "1"]
    assert remap_ports(argv, ports) == [
        "celeriac", "worker", "-c", "9808", "--health-port", "41234", "--liveness-port=41235", "--port", "1",
    ]
