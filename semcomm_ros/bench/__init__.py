"""Benchmarks: ``semcomm bench <name>`` runs ``semcomm_ros/bench/<name>.py``; each prints the
figures the docs quote (speed and size targets live here, not in timed tests).

Adding one is dropping a file in, nothing to register. A benchmark module:

- is named after its benchmark: ``bench/<name>.py`` is ``semcomm bench <name>``;
- starts its docstring with the line "``semcomm bench <name>``: <one-line help>": the listing
  (``semcomm bench --help``) reads that line from the file without importing the module;
- defines ``add_arguments(parser)`` and ``run(args) -> int``, as every ``semcomm`` subcommand;
- may import torch, rclpy and the like at its top: only running it imports it.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

_DIR = Path(__file__).resolve().parent


def _help(path: Path) -> str:
    """The one-line help from the module docstring's first line (after "``semcomm bench x``:")."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = doc.splitlines()[0] if doc else ""
    line = first.split(":", 1)[1] if first.startswith("``semcomm bench") and ":" in first else first
    return line.strip().rstrip(".")


def benches() -> dict[str, tuple[str, str]]:
    """name -> (module, one-line help) of every benchmark, by name."""
    found = {info.name: (f"{__name__}.{info.name}", _help(_DIR / f"{info.name}.py"))
             for info in pkgutil.iter_modules([str(_DIR)]) if not info.name.startswith("_")}
    return dict(sorted(found.items()))
