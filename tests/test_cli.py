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


def test_a_library_warning_is_one_line_on_stderr_and_the_hook_is_put_back(cli, monkeypatch):
    import json
    import warnings

    from edgedetect.runtime import Classifier

    describe = Classifier.describe

    def describe_with_a_warning(self):
        warnings.warn("the sidecar says 32 px\nbut the model takes 16", UserWarning)
        return describe(self)

    monkeypatch.setattr(Classifier, "describe", describe_with_a_warning)
    before = warnings.showwarning
    code, out, err = cli("info", REPO / "models" / "cnn32_int8.tflite", "--json")
    assert code == 0 and json.loads(out)["input"]["shape"] == [1, 32, 32, 3]
    assert err == "warning: the sidecar says 32 px\\nbut the model takes 16\n"  # no file name, line or source
    assert warnings.showwarning is before


def test_a_user_mistake_is_one_error_line_and_a_usage_error_is_clicks(cli, tmp_path):
    code, out, err = cli("predict", tmp_path / "nothing.jpg", "--model", tmp_path)
    assert code == 2 and "Invalid value for '--model'" in err and "Usage:" in err
    code, out, err = cli("bench", REPO / "models" / "cnn32_int8.tflite", "--perturb", "zoom:2")
    assert code == 1 and out == "" and err.startswith("error: ") and err.count("\n") == 1


def test_the_readme_lists_every_command():
    import typer

    from edgedetect.app import app

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    names = [name for name in group.commands if name != "data"]
    names += [f"data {name}" for name in group.commands["data"].commands]
    assert len(names) == 11
    for name in names:
        assert f"| `edgedetect {name}" in readme, name
