"""The command line's shape: one app, commands registered in one place, one error and warning policy."""

import ast

from conftest import REPO

COMMANDS = REPO / "edgedetect" / "commands"
SHARED = {"edgedetect.commands.options", "edgedetect.commands.output"}  # what commands may share


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_commands_import_neither_the_app_nor_each_other():
    commands = {f"edgedetect.commands.{p.stem}" for p in COMMANDS.glob("*.py") if p.stem != "__init__"} - SHARED
    assert {"edgedetect.commands.predict", "edgedetect.commands.train"} <= commands
    for path in COMMANDS.glob("*.py"):
        imports = imported_modules(path)
        me = f"edgedetect.commands.{path.stem}"
        assert not imports & {"edgedetect.app", "edgedetect.cli"}, path
        assert not imports & (commands - {me}), (path, imports & commands)


def test_the_app_registers_every_command_module():
    imports = imported_modules(REPO / "edgedetect" / "app.py")
    for path in COMMANDS.glob("*.py"):
        if path.stem not in ("__init__", "options", "output"):
            assert f"edgedetect.commands.{path.stem}" in imports, path
