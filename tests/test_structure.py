"""The package's shape: arrows point down, and nothing imports a command line."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND_LINES = {"a3c.train", "a3c.evaluate"}


def a3c_imports() -> dict[str, set[str]]:
    """{module: the a3c modules it imports}, from the source (lazy imports included)."""
    graph = {}
    for path in sorted((ROOT / "a3c").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if parts[-1] == "__init__" else module.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base]).strip(".")
                imported.add(base)
                imported |= {f"{base}.{alias.name}" for alias in node.names}
        graph[module] = {name for name in imported if name.startswith("a3c") and name != module}
    modules = set(graph)
    return {module: {name for name in names if name in modules} for module, names in graph.items()}


def test_no_module_of_a3c_imports_a_command_line_module():
    for module, imported in a3c_imports().items():
        assert not imported & COMMAND_LINES, f"{module} imports {imported & COMMAND_LINES}"


def test_the_a3c_modules_have_no_import_cycle():
    graph = a3c_imports()
    assert "a3c.backends.local" in graph and "a3c.worker" in graph["a3c.backends.local"]  # the parser sees imports
    visiting, done = set(), set()

    def visit(module, path):
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join([*path, module])
        visiting.add(module)
        for name in sorted(graph[module]):
            visit(name, [*path, module])
        visiting.discard(module)
        done.add(module)

    for module in graph:
        visit(module, [])
