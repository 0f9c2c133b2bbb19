"""The layout holds: imports flow one way, CLIs are leaves, one module owns aihwkit, the README's
layout table matches the tree, and the summary of benchmark results needs no heavy package."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.paths import PROJECT_ROOT

# Lower layers never import higher ones; hw_model and accuracy never import each other.
LAYERS = {"common": 0, "workloads": 1, "hw_model": 2, "accuracy": 2, "envs": 3, "agents": 4,
          "reporting": 5, "cli": 6, "bench": 6, "scripts": 7, "train": 7, "evaluate": 7}
PACKAGES = [name for name in LAYERS if (PROJECT_ROOT / name).is_dir()]


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for entry in ("train", "evaluate"):
        modules[entry] = PROJECT_ROOT / f"{entry}.py"
    return modules


def imports_of(path: Path) -> set[str]:
    """Every project module a file imports, at any depth (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


MODULES = project_modules()
GRAPH = {name: {target for target in imports_of(path) if target in MODULES and target != name}
         for name, path in MODULES.items()}


def is_cli(name: str) -> bool:
    tree = ast.parse(MODULES[name].read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def test_imports_flow_one_way():
    wrong = []
    for source, targets in GRAPH.items():
        for target in targets:
            low, high = source.split(".")[0], target.split(".")[0]
            if LAYERS[high] > LAYERS[low] or (LAYERS[high] == LAYERS[low] and low != high and low not in ("cli", "bench")):
                wrong.append(f"{source} -> {target}")
    assert not wrong, "imports against the flow common -> workloads -> hw_model/accuracy -> envs -> agents -> reporting -> cli/bench/entry points: " + ", ".join(wrong)


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in GRAPH[node]:
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(target):] + [node, target]))
            if target not in state:
                visit(target, stack + [node])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])


def test_no_module_imports_a_cli_module():
    clis = {name for name in MODULES if is_cli(name)}
    assert {"cli.layers", "cli.report", "hw_model.cost"} & clis == {"cli.layers", "cli.report"}
    wrong = [f"{source} -> {target}" for source, targets in GRAPH.items() if not source.startswith("tests")
             for target in targets & clis]
    assert not wrong, wrong
    library = [name for name in clis if name.split(".")[0] not in ("cli", "bench", "scripts", "train", "evaluate")]
    assert not library, f"library modules with a command-line main(): {library}; move it to cli/"


def test_only_the_adapter_imports_aihwkit():
    importers = [name for name, path in MODULES.items() if any(i.split(".")[0] == "aihwkit" for i in imports_of(path))]
    assert importers == ["accuracy.aihwkit_adapter"]


def test_summarize_imports_no_torch_gymnasium_or_aihwkit():
    probe = ("import sys, runpy; sys.argv = ['summarize']; runpy.run_module('bench.summarize', run_name='__main__') "
             "if False else None; import bench.summarize as s; s.main([]); s.main(['--compare']); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'gymnasium', 'aihwkit'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_readme_layout_table_matches_the_tree():
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([^`]+?)/?`", table, flags=re.MULTILINE))
    folders = {p.name for p in PROJECT_ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
               and p.name not in ("outputs", "cache", "multirun", "runs") and "egg-info" not in p.name}
    assert folders <= listed, f"folders missing from the README's layout table: {folders - listed}"
    for name in listed:
        for part in name.split("`, `"):
            assert (PROJECT_ROOT / part).exists(), f"README lists {part}, which does not exist"
    for path in re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.(?:py|json|yaml))`", table):
        assert (PROJECT_ROOT / path).exists(), f"README's layout table names {path}, which does not exist"
