"""Installing Celeriac never shadows the standard library's ``operator`` module."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import operator, sysconfig, celeriac, celeriac_operator; "
    "assert operator.__file__ is None or operator.__file__.startswith(sysconfig.get_paths()['stdlib']), "
    "operator.__file__; "
    "assert callable(operator.itemgetter); "
    "print(celeriac.__file__); print(celeriac_operator.__file__)"
)


def _install_and_probe(venv: Path, *pip_args: str) -> list[str]:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Dependencies come from the test run's environment (a path line in a .pth file), so only
    # Celeriac itself is installed here and the probe still imports it with its dependencies.
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    (Path(purelib) / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", *pip_args], check=True, cwd=ROOT)
    out = subprocess.run([str(python), "-c", PROBE], check=True, capture_output=True, text=True, cwd=venv)
    return out.stdout.split()


@pytest.mark.parametrize("editable", [False, True], ids=["wheel", "editable"])
def test_import_operator_is_the_standard_library_after_install(tmp_path: Path, editable: bool) -> None:
    args = ("-e", str(ROOT)) if editable else (str(ROOT),)
    celeriac_file, operator_pkg_file = _install_and_probe(tmp_path / "venv", *args)
    if editable:
        assert celeriac_file == str(ROOT / "worker" / "celeriac" / "__init__.py")
        assert operator_pkg_file == str(ROOT / "operator" / "celeriac_operator" / "__init__.py")
    else:
        venv = str(tmp_path / "venv")
        assert celeriac_file.startswith(venv)
        assert operator_pkg_file.startswith(venv)


def test_source_roots_hold_no_init_module() -> None:
    assert not (ROOT / "worker" / "__init__.py").exists()
    assert not (ROOT / "operator" / "__init__.py").exists()
