"""The package's layers: imports go only downwards, and no module imports torch that should not.

Every import counts, also those inside functions (lazy imports still tie modules together);
imports under `if TYPE_CHECKING:` are for annotations only and do not.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "invoke_shell"
# top to bottom; a module may import from its own layer and the layers below it
LAYERS = ["cli", "shell", "session", "models", "files", "engines", "line", "base"]
BASE = {"errors", "logs", "schedulers", "__init__", "__main__"}


def layer(module: str) -> str:
    parts = module.split(".")[1:]  # drop "invoke_shell"
    if not parts or parts[0] in BASE:
        return "base" if not parts or parts[0] != "__main__" else "cli"
    return parts[0]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("invoke_shell"):
            found.add(node.module)
            found |= {
                f"{node.module}.{a.name}"
                for a in node.names
                if (PACKAGE.parent / node.module.replace(".", "/") / f"{a.name}.py").exists()
            }
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("invoke_shell")}
    return found


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if "tiny_shapes" in path.parts:  # the embedded model's training tools, not the program
            continue
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        out[".".join(rel.parts)] = path
    return out


def test_imports_only_go_down_the_layers():
    wrong = []
    for name, path in modules().items():
        here = LAYERS.index(layer(name))
        for target in imports(path):
            there = layer(target)
            if there in LAYERS and LAYERS.index(there) < here:
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports going up a layer:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = {name: {t for t in imports(path) if t in modules()} for name, path in modules().items()}
    visiting, done, cycles = set(), set(), []

    def visit(node: str, trail: list[str]) -> None:
        if node in done:
            return
        if node in visiting:
            cycles.append(" -> ".join(trail[trail.index(node) :] + [node]))
            return
        visiting.add(node)
        for nxt in graph[node]:
            if not nxt.endswith("__init__"):
                visit(nxt, [*trail, node])
        visiting.discard(node)
        done.add(node)

    for node in graph:
        visit(node, [])
    assert not cycles, cycles


def test_the_shell_side_imports_no_torch():
    code = (
        "import sys\n"
        "import invoke_shell.cli, invoke_shell.shell.repl, invoke_shell.shell.completion, invoke_shell.shell.validator\n"
        "import invoke_shell.session.worker, invoke_shell.files.fetch, invoke_shell.models.registry\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
