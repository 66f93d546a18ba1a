"""Run the real ``helm`` (built by ``scripts/control-plane build``) on charts/celeriac: lint, template, install.

``helm_path()`` raises a clear error when helm is missing (never a skip). ``render(*sets)`` returns the
rendered objects; ``HelmFailed`` carries helm's stderr so a test can assert on a schema or ``fail`` message.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "celeriac"


class HelmFailed(AssertionError):
    """helm exited non-zero; the message holds its stderr."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.stderr = stderr


def helm_path() -> Path:
    from control_plane import HELM

    path = HELM.path("helm")
    if not path.is_file():
        raise RuntimeError(f"helm is not built ({path} is missing): run scripts/control-plane build")
    return path


def helm(*args: str, kubeconfig: Path | None = None, timeout_s: float = 120) -> str:
    """Run helm with a private cache/config home; returns stdout, raises HelmFailed on a non-zero exit."""
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"celeriac-helm-home-{os.getuid()}"
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    done = subprocess.run([str(helm_path()), *args], capture_output=True, text=True, env=env,
                          timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise HelmFailed(list(args), done.returncode, done.stderr)
    return done.stdout


def set_args(values: dict[str, str]) -> list[str]:
    """``--set key=value`` pairs (``--set-json`` when the value starts with ``[`` or ``{``)."""
    args: list[str] = []
    for key, value in values.items():
        flag = "--set-json" if value[:1] in "[{" else "--set"
        args += [flag, f"{key}={value}"]
    return args


def render(values: dict[str, str] | None = None, *, namespace: str = "celeriac-system",
           release: str = "rel", extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``helm template`` the chart (tests included) into a list of objects."""
    out = helm("template", release, str(CHART), "--namespace", namespace, *set_args(values or {}), *extra)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None,
         namespace: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)
            and (namespace is None or o["metadata"].get("namespace") == namespace)]
