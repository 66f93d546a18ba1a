"""A missing binary is reported inside the fixture with the command that fixes it."""

from __future__ import annotations

from pathlib import Path

import pytest

import control_plane
from servers import MissingTool, require_binary


def test_missing_control_plane_binaries_name_the_build_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELERIAC_CACHE", str(tmp_path))
    with pytest.raises(control_plane.ControlPlaneError, match="scripts/control-plane build"):
        control_plane.ControlPlane(tmp_path / "run").start()


def test_missing_server_binary_names_the_install_command() -> None:
    with pytest.raises(MissingTool, match="apt-get install -y no-such-server"):
        require_binary("no-such-server-celeriac", "apt-get install -y no-such-server")


def test_builder_module_replaces_every_staging_module_at_the_matching_tag() -> None:
    gomod = control_plane.k8s_builder_gomod()
    assert f"require k8s.io/kubernetes {control_plane.K8S_VERSION}" in gomod
    staging_tag = control_plane.K8S_VERSION.replace("v1.", "v0.", 1)
    replaced = [line for line in gomod.splitlines() if "=>" in line]
    assert len(replaced) == len(control_plane.K8S_STAGING_MODULES) == 33
    assert all(line.rstrip().endswith(staging_tag) for line in replaced)
