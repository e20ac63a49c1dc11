"""The `peerloom.cli` package: every entry point lists every registered command, and the command modules stay
independent of each other (they share only the helper modules), as DESIGN.md's layout asks."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import peerloom.cli
from peerloom.cli import COMMAND_MODULES, app

PACKAGE = Path(peerloom.cli.__file__).parent
# Whatever users have been told to run: a registration dropped by mistake fails here as well as in the list below
DOCUMENTED = {"create", "info", "get", "share", "daemon", "ls", "pause", "resume", "rm", "stats", "limit", "demo", "id",
              "ping", "dht", "pubsub"}


def registered() -> set[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return set(group.commands)


def entry_point(entry: str) -> list[str]:
    if entry == "peerloom":
        script = shutil.which("peerloom", path=str(Path(sys.executable).parent))
        assert script, "the console script is installed next to the interpreter"
        return [script]
    return [sys.executable, *entry.split()]


@pytest.mark.parametrize("entry", ["peerloom", "-m peerloom", "-m peerloom.cli"])
def test_help_lists_every_registered_command_whichever_way_it_is_run(entry: str):
    command = entry_point(entry)
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^  (\w+)  ", result.stdout, re.M))
    assert listed == registered(), listed ^ registered()
    assert listed >= DOCUMENTED, DOCUMENTED - listed
    get = subprocess.run([*command, "get", "--help"], capture_output=True, text=True, timeout=60)
    assert get.returncode == 0 and "--files" in get.stdout, get.stderr


def module_name(path: Path) -> str:
    return "peerloom.cli" if path.name == "__init__.py" else f"peerloom.cli.{path.stem}"


def cli_imports(path: Path) -> set[str]:
    """The modules of `peerloom.cli` (the package itself included) that `path` imports, anywhere in it (inside
    functions and under TYPE_CHECKING too)."""
    modules = {module_name(p) for p in PACKAGE.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from peerloom.cli import files` imports the module files; `from peerloom.cli import app`, the package
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                      for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add("a relative import")  # spelled out: `from peerloom.cli.x import ...`
    return {name for name in found if name in modules or name == "a relative import"}


def command_modules() -> set[str]:
    """The modules that bring commands: those defining `register(app)`."""
    return {module_name(path) for path in PACKAGE.glob("*.py")
            if any(isinstance(node, ast.FunctionDef) and node.name == "register"
                   for node in ast.parse(path.read_text()).body)}


def test_every_command_module_is_registered_in_the_one_place():
    """Each module of the package that brings commands is in `COMMAND_MODULES` (a service's own CLI module, outside
    the package, joins the same list), and each listed module brings its commands through `register`."""
    assert command_modules() <= {module.__name__ for module in COMMAND_MODULES}
    assert all(callable(getattr(module, "register", None)) for module in COMMAND_MODULES)
    assert cli_imports(PACKAGE / "__init__.py") == command_modules()


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_cli_modules_import_only_the_shared_helpers(path: Path):
    """A command module imports no other command module and not the package (whose `app` it would register on when
    imported): only the helper modules. `__init__` registers; `__main__` only calls `main`."""
    if path.name == "__init__.py":
        return
    imported = cli_imports(path)
    if path.name == "__main__.py":
        assert imported == {"peerloom.cli"}
        return
    helpers = {module_name(p) for p in PACKAGE.glob("*.py")} - command_modules() - {"peerloom.cli",
                                                                                     "peerloom.cli.__main__"}
    assert imported <= helpers, f"{path.name} imports {sorted(imported - helpers)}: move what it needs into a helper"


def test_no_command_is_registered_at_import():
    """Commands are added in `register` only: no module-level decorator of a typer app (`@app.command()`)."""
    for path in PACKAGE.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    call = decorator.func if isinstance(decorator, ast.Call) else decorator
                    registers = isinstance(call, ast.Attribute) and call.attr in ("command", "callback", "add_typer")
                    assert not registers, f"{path.name}: {node.name} registers itself at import"
