"""The command every file generator shares (``crdgen``, ``chartgen``): write, or ``--check`` for drift.

Generated files are committed, so CI and the unit tests can fail on drift; this keeps the two
generators' command lines, messages and exit codes identical.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

PathLike = TypeVar("PathLike", str, Path)


def main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None,
    repo: Path,
    files: Callable[[Path], Mapping[PathLike, str]],
    drifted: Callable[[Path], Sequence[PathLike]],
) -> int:
    """Write ``files(repo)`` (removing drifted paths that are no longer generated), or with ``--check``
    write nothing and exit 1 naming each path ``drifted(repo)`` returns."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 listing drifting files")
    parser.add_argument("--repo", type=Path, default=repo, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted(args.repo)
        for path in stale:
            print(f"drift: {path} (regenerate: python -m {prog})", file=sys.stderr)
        return 1 if stale else 0
    expected = {str(path): text for path, text in files(args.repo).items()}
    for path in drifted(args.repo):
        if str(path) not in expected:
            (args.repo / path).unlink()
            print(f"removed {path}")
    for name, text in expected.items():
        target = args.repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {name}")
    return 0
