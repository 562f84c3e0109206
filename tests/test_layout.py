"""Which way imports go (docs/architecture.md, "Where the code lives"): nothing outside app/ imports app,
pipelines/ imports nothing from models/ or export/ (the training side), export/ (what the families' exports
share) imports nothing from models/ or app/, each family's export lives in models/<family>/, the run-time path
(pipelines/, app/) never imports torch, and no file imports another in a circle, lazy imports inside functions
included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "pipelines", "models", "export")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(("avcall",) + (parts[:-1] if parts[-1] == "__init__" else parts))] = path
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in mods and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_imports_go_one_way_and_never_in_a_circle():
    graph = import_graph()
    assert len(graph) > 100  # the walk found the code
    into_app = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                      if b.startswith("avcall.app") and not a.startswith("avcall.app"))
    assert into_app == []
    into_training = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                           if a.startswith("avcall.pipelines") and b.startswith(("avcall.models", "avcall.export")))
    assert into_training == []
    export_up = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                       if a.startswith("avcall.export") and b.startswith(("avcall.models", "avcall.app")))
    assert export_up == []
    assert cycles(graph) == []


def test_each_familys_export_lives_in_models():
    """export/ holds what the exports share (the manifest), no family's graph: nothing there calls torch's
    exporter or imports torch."""
    exporters = []
    for name, path in modules().items():
        if name.startswith("avcall.export"):
            text = path.read_text()
            exporters += [name] * (("torch.onnx.export" in text) + ("import torch" in text))
    assert exporters == []


def test_the_run_time_path_never_imports_torch():
    """torch is for training and export only: no module of pipelines/ or app/ imports it, even lazily."""
    torch_users = []
    for name, path in modules().items():
        if not name.startswith(("avcall.pipelines", "avcall.app")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            torch_users += [name for n in names if n == "torch" or n.startswith("torch.")]
    assert torch_users == []


# the commands of app/ (`avcall <command>`); what two of them share lives in a module both import
COMMANDS = ("demo", "soak", "serve", "worker", "cluster", "live", "sync", "devices", "corpus", "bench",
            "bench_cluster", "bench_echo")
# a benchmark drives the command it measures: `bench serve` a served page, `bench cluster` a cluster
MEASURES = {"bench": {"serve"}, "bench_cluster": {"cluster"}}


def test_commands_are_leaves():
    """No command uses another as a library (a change to the demo cannot break the soak), the benches aside,
    which start the command they measure."""
    graph = import_graph()
    found = sorted(f"{a} -> {b}" for a in COMMANDS for b in COMMANDS
                   if f"avcall.app.{b}" in graph[f"avcall.app.{a}"] and b not in MEASURES.get(a, ()))
    assert found == []
