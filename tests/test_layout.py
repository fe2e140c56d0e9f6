"""The layout's promises: no import cycles among the project's modules (every package included),
nothing imports starter, and the analysis side never needs torch (one interpreter checks it all:
the modules, the demo's simulation, --from-cache, clip-la and clip-pm)."""
import ast
import json
import re
import shutil
import subprocess
import sys

from conftest import PROJECT_DIR, RUN_FILES

TOP_LEVEL = ("starter", "metrics", "plotting")
PACKAGES = ("cli", "sources", "demo", "inference", "runs", "analysis", "debias", "report", "study",
            "explorer")
CLI_LAYER = ("starter", "cli")  # the only modules that see argparse and spell commands
TORCH_FREE = ("metrics", "plotting", "cli.options", "cli.settings", "cli.commands", "cli.messages",
              "sources.classes", "runs.outputs", "runs.descriptors", "runs.kinds", "runs.loader",
              "runs.errors", "runs.tables", "debias.settings",
              "runs.cache", "inference.chunk_store", "inference.config", "inference.distributed",
              "analysis.pseudo_labels", "analysis.figure_workers", "analysis.run_analysis",
              "analysis.concepts", "analysis.why", "analysis.explorer_tables", "debias.logit_adjustment",
              "debias.training_free", "report", "report.bundle", "study", "explorer",
              "explorer.contents", "explorer.page")


def module_files():
    """{dotted module name: its file} of every module of the project (benchmarks, scripts and
    tests aside): the top-level ones and every package's."""
    files = {path.stem: path for path in PROJECT_DIR.glob("*.py")}
    for package in PACKAGES:
        for path in (PROJECT_DIR / package).glob("*.py"):
            files[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return files


def imported_names(path, module):
    """The dotted names a module imports, at any depth of its code, relative imports resolved,
    `from package import submodule` counted as the submodule."""
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(filter(None, [package.rsplit(".", node.level - 1)[0], base]))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def project_imports():
    """{module: modules of this project it imports}. A package's own __init__ does not count for
    its modules: Python has it initialising already when they are imported."""
    files = module_files()
    graph = {}
    for module, path in files.items():
        own_packages = {module.partition(".")[0]} if "." in module else set()
        graph[module] = {name for name in imported_names(path, module)
                         if name in files and name != module and name not in own_packages}
    return graph


def test_the_graph_covers_every_package():
    graph = project_imports()
    assert {module.partition(".")[0] for module in graph} == set(TOP_LEVEL) | set(PACKAGES)
    assert "report.questions" in graph["report.sections"]  # a relative import is resolved
    assert "analysis.run_analysis" in graph["debias.training_free"]


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


def test_only_the_cli_and_its_stage_packages_sit_at_the_top():
    assert sorted(path.stem for path in PROJECT_DIR.glob("*.py")) == sorted(TOP_LEVEL)


# One interpreter for every promise of the torch-free side: it imports each module above, runs
# the demo's simulation, and redoes clip and debiaspl from their caches (--from-cache), then
# clip-la and clip-pm. Nothing is kept from importing torch: it is looked for only at the end,
# so that a guarded `import torch` counts too.
WITHOUT_TORCH = """
import importlib, sys
out, modules = sys.argv[1], sys.argv[2].split(",")
for module in modules:
    importlib.import_module(module)
from demo import simulation
simulation.simulated_predictions()
import starter
codes = [starter.main([*arguments, "--out", out]) for arguments in (
    ["--model", "clip", "--from-cache"], ["--model", "debiaspl", "--from-cache"],
    ["--model", "clip-la"], ["--model", "clip-pm"])]
loaded = [name for name in ("torch", "open_clip", "timm") if name in sys.modules]
sys.exit(max(codes) or (f"imported {', '.join(loaded)}" if loaded else 0))
"""


def test_the_analysis_side_runs_without_importing_torch(real_runs, tmp_path):
    for model in ("clip", "debiaspl"):  # the real runs' caches alone: every output made anew
        (tmp_path / model).mkdir()
        shutil.copy(real_runs / model / "predictions.npz", tmp_path / model)
    result = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(tmp_path), ",".join(TORCH_FREE)],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for model in ("clip", "debiaspl", "clip-la", "clip-pm"):
        assert {path.name for path in (tmp_path / model).iterdir()} >= RUN_FILES, model
    for model in ("clip", "debiaspl"):
        assert (json.loads((tmp_path / model / "metrics.json").read_text())["classes"]
                == json.loads((real_runs / model / "metrics.json").read_text())["classes"])
    assert "most predicted" in result.stdout and "cosine" in result.stdout


def below_the_cli():
    """{module: its file} of every module below the CLI layer."""
    return {module: path for module, path in module_files().items()
            if module.partition(".")[0] not in CLI_LAYER}


def test_no_module_below_the_cli_imports_argparse_or_reads_a_namespace():
    offenders = []
    for module, path in below_the_cli().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                if "argparse" in names:
                    offenders.append(f"{module} imports argparse")
            elif isinstance(node, (ast.FunctionDef, ast.Lambda)) and "args" in [
                    parameter.arg for parameter in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]:
                offenders.append(f"{module} takes a parameter `args`")  # *args, a tuple, is not one
            elif isinstance(node, ast.Name) and node.id == "args" and isinstance(node.ctx, ast.Load):
                offenders.append(f"{module} reads `args`")
    assert not offenders, sorted(set(offenders))


def test_python_starter_py_is_spelled_only_in_the_cli_layer():
    spelled = [module for module, path in below_the_cli().items()
               if re.search(r"python\W{0,4}starter\.py", path.read_text())]
    assert not spelled
    assert "python starter.py" not in "".join(
        node.value for path in below_the_cli().values() for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str))
