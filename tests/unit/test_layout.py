"""The gateway's imports run one way: tools → server → modes, backend → core (docs/design.md).

Read from the source with `ast`, so a new import that breaks the direction, or a cycle, fails
here before anyone has to notice it in a review.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import gateway

PACKAGE_DIR = Path(gateway.__file__).resolve().parent
# which rooms a room may import from (itself always)
MAY_IMPORT = {
    "core": set(),
    "backend": {"core"},
    "modes": {"core"},
    "server": {"core", "backend", "modes"},
    "tools": {"core", "backend", "modes", "server"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def gateway_imports(path: Path) -> set[str]:
    """The gateway modules `path` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from gateway.server import access` imports the module gateway.server.access
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return {name for name in found if name.split(".")[0] == "gateway"}


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}
    return {
        name: {imported for imported in gateway_imports(path) if imported in modules} - {name}
        for name, path in modules.items()
    }


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else None


def test_every_module_lives_in_a_room() -> None:
    packages = {"gateway", *(f"gateway.{name}" for name in MAY_IMPORT)}
    loose = [name for name in import_graph() if room(name) is None and name not in packages]
    assert not loose, f"modules outside core/backend/modes/server/tools: {loose}"


def test_imports_run_one_way() -> None:
    wrong = [
        f"{module} imports {imported}"
        for module, imports in import_graph().items()
        if (source := room(module)) is not None
        for imported in imports
        if (target := room(imported)) is not None
        and target != source
        and target not in MAY_IMPORT[source]
    ]
    assert not wrong, wrong


def test_no_import_cycle() -> None:
    modules_only = {
        name: {imported for imported in imports if room(imported) is not None}
        for name, imports in import_graph().items()
    }
    try:
        tuple(TopologicalSorter(modules_only).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' → '.join(exc.args[1])}") from None


def test_the_modes_import_without_tritonclient() -> None:
    modes = sorted(name for name in import_graph() if room(name) in {"core", "modes"})
    script = (
        "import sys\n"
        "class NoTriton:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'tritonclient':\n"
        "            raise ImportError('tritonclient is unimportable in this test')\n"
        "sys.meta_path.insert(0, NoTriton())\n"
        f"for name in {modes!r}:\n"
        "    __import__(name)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {"gateway.modes.files", "gateway.modes.streaming"} <= set(modes), modes
