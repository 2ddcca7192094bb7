"""`python -m bench [NAME ...] [--quick]`: run benchmark modules and print one table each.

Without names every module of bench/ with a ``run()`` runs (see bench/__init__.py), in name
order. The machine (CPU model, cores, RAM, Python) is printed first. ``--quick`` sets
``DTMON_BENCH_QUICK=1``, which modules read to use small sizes (a smoke run, not figures).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

import bench

QUICK_ENV = "DTMON_BENCH_QUICK"
_COLUMNS = ("metric", "value", "unit", "baseline", "ratio", "target")
console = Console(width=None if sys.stdout.isatty() else 160)  # logs and CI: no folding


def module_names() -> list[str]:
    """Names of the benchmark modules in bench/ (those defining ``run``, checked on import)."""
    return sorted(info.name for info in pkgutil.iter_modules(bench.__path__)
                  if not info.name.startswith("_"))


def machine() -> str:
    """One line describing this machine: CPU model, cores, RAM, Python, OS."""
    return (f"{_cpu_model()}, {os.cpu_count()} cores, {_ram_gib():.0f} GiB RAM, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def table(name: str, rows: list[dict], seconds: float) -> Table:
    """A module's rows as a table; columns no row fills are left out."""
    columns = [c for c in _COLUMNS if any(row.get(c) not in (None, "") for row in rows)]
    result = Table(title=f"bench/{name}.py ({seconds:.0f} s)", title_justify="left")
    for column in columns:
        result.add_column(column, justify="left" if column == "metric" else "right",
                          overflow="fold")
    for row in rows:
        result.add_row(*(_cell(row.get(column)) for column in columns))
    return result


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def run_module(name: str) -> bool:
    """Run ``bench/<name>.py`` and print its table; whether it succeeded."""
    started = time.monotonic()
    try:
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "run"):
            return True  # a helper module (e.g. bench/synthetic.py)
        rows = module.run()
    except Exception:  # noqa: BLE001 - one failing benchmark must not hide the others
        console.print(f"[bold red]bench/{name}.py failed:[/]")
        console.print(traceback.format_exc(), highlight=False, markup=False)
        return False
    console.print(table(name, rows, time.monotonic() - started))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="modules to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args(argv)
    available = module_names()
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: "
                     f"{', '.join(available)}")
    if args.quick:
        os.environ[QUICK_ENV] = "1"
    console.print(f"[bold]Machine:[/] {machine()}" + (" [yellow](--quick)[/]" if args.quick
                                                        else ""))
    results = [run_module(name) for name in args.names or available]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
