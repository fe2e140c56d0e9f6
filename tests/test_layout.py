"""The layout's promises: no import cycles, nothing imports starter, the analysis side never
needs torch."""
import ast
import subprocess
import sys

from conftest import PROJECT_DIR

TORCH_FREE = ("metrics", "pseudo_labels", "plotting", "logit_adjustment", "outputs", "runs", "cache",
              "chunk_store", "run_config", "distributed", "figure_workers", "classes", "analysis",
              "training_free", "report", "explorer", "explorer.contents", "explorer.page", "concepts",
              "bundle", "why", "options")


def project_imports():
    """{module: modules of this project it imports, at any depth of its code}."""
    modules = {path.stem for path in PROJECT_DIR.glob("*.py")}
    graph = {}
    for module in modules:
        tree = ast.parse((PROJECT_DIR / f"{module}.py").read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        graph[module] = names & modules
    return graph


def test_no_import_cycles_and_nothing_imports_starter():
    graph = project_imports()
    assert not [module for module, imported in graph.items() if "starter" in imported]
    done, visiting = set(), []

    def visit(module):
        assert module not in visiting, f"import cycle: {' -> '.join(visiting + [module])}"
        if module not in done:
            visiting.append(module)
            for imported in graph[module]:
                visit(imported)
            visiting.pop()
            done.add(module)

    for module in graph:
        visit(module)


def test_analysis_side_imports_without_torch():
    script = ("import sys; sys.modules['torch'] = None; sys.modules['open_clip'] = None; "
              "sys.modules['timm'] = None; " + "; ".join(f"import {module}" for module in TORCH_FREE))
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_DIR, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
