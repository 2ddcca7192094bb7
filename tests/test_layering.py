"""The packages depend one way only: vntext <- storage <- crawler <- monitor. A reader can tell
from the imports which layer sits on which; a module importing a layer above its own fails."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.fixtures.shared_data import REPO_ROOT

# Each package and the packages it must never import.
FORBIDDEN = {
    "vntext": {"storage", "crawler", "monitor"},
    "storage": {"crawler", "monitor"},
    "crawler": {"monitor"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports (anywhere in it, functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_no_package_imports_a_layer_above_it() -> None:
    wrong = [f"{path.relative_to(REPO_ROOT)} imports {sorted(imported_packages(path) & above)}"
             for package, above in FORBIDDEN.items()
             for path in sorted((REPO_ROOT / package).rglob("*.py"))
             if imported_packages(path) & above]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from monitor.topics import load_topics\n", "utf-8")
    assert "monitor" in imported_packages(module)
