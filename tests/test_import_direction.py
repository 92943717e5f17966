"""Imports point one way (docs/architecture.md).

- The module import graph of the repository's packages has no cycle, and the runtime
  (``stream``) imports no training, research or benchmark module: read from the source with
  ``ast``, so an import inside a function counts as much as one at the top of a file.
- The runtime CLI loads no training, research or benchmark code: checked in a fresh
  interpreter, so modules loaded by other tests cannot hide a regression.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

FORBIDDEN = ("torch", "gensim", "model_export", "research", "benchmarks", "matplotlib")
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stream", "model_export", "infra", "benchmarks", "research")
# Which package may import which (besides itself). The runtime imports none of the others.
ALLOWED = {
    "stream": {"infra"},
    "infra": {"stream"},
    "model_export": {"stream", "infra"},
    "benchmarks": {"stream", "infra", "model_export"},
    "research": {"stream", "infra", "model_export", "benchmarks"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the repository modules it imports, from every ``import`` statement in its
    source: at the top, inside functions and under ``if TYPE_CHECKING`` alike. ``from p import
    x`` is an edge to ``p.x`` when that is a module, else to ``p``."""
    paths = {module_name(p): p for pkg in packages for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package[: len(package) - node.level + 1],
                                     *([node.module] if node.module else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in paths:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_cycle_finder_reports_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # stream.cli imports the worker's app only when `tweetwatch worker` runs.
    assert "stream.app" in graph["stream.cli"]
    assert {"stream.topics", "stream.records"} <= graph["stream.alert_agent"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_packages_import_only_what_they_may():
    wrong = sorted(f"{module} imports {target}"
                   for module, targets in import_graph().items() for target in targets
                   if (src := module.split(".")[0]) != (dst := target.split(".")[0])
                   and dst not in ALLOWED[src])
    assert wrong == []


def test_one_command_line_library():
    """click everywhere: no argparse in any package (the studies' scripts included)."""
    users = sorted(str(path.relative_to(ROOT)) for pkg in PACKAGES
                   for path in (ROOT / pkg).rglob("*.py")
                   if "argparse" in {alias.name for node in ast.walk(ast.parse(path.read_text()))
                                     if isinstance(node, ast.Import) for alias in node.names})
    assert users == []


def loaded_after(statement: str) -> set[str]:
    """Module names in ``sys.modules`` after running ``statement`` in a new interpreter."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def forbidden(modules: set[str]) -> list[str]:
    return sorted(m for m in modules
                  if any(m == name or m.startswith(name + ".") for name in FORBIDDEN))


@pytest.mark.parametrize("statement", [
    "import stream.cli",
    # Building the help text lists every command (the lazy ones by name only).
    "import stream.cli\nstream.cli.main.list_commands(None)",
])
def test_runtime_cli_loads_no_training_research_or_benchmark_code(statement):
    assert forbidden(loaded_after(statement)) == []


def test_the_check_sees_a_forbidden_import():
    # The same probe on the training CLI's command must report model_export.
    assert "model_export.cli" in forbidden(loaded_after("import model_export.cli"))


def test_lazy_commands_still_listed_and_loadable():
    from click.testing import CliRunner

    from stream.cli import main

    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("train", "eval", "bench", "alerts", "worker", "publish"):
        assert f"  {name} " in result.output
    bench = CliRunner().invoke(main, ["bench", "--help"])
    assert bench.exit_code == 0 and "  model " in bench.output and "  pipeline " in bench.output
    train = CliRunner().invoke(main, ["train", "--help"])
    assert train.exit_code == 0 and "--encoders" in train.output


def test_a_missing_training_package_is_a_one_line_error():
    """The runtime image has no model_export: `tweetwatch train` says so in one line."""
    code = """
import importlib.abc, sys
class NoTraining(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "model_export" or name.startswith("model_export."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTraining())
sys.argv = ["tweetwatch", "train", "--help"]
from stream.cli import main
main()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "tweetwatch: error: 'train' needs model_export, which is not installed "
        "(pip install 'tweetwatch[train,bench]')"]
    listed = subprocess.run([sys.executable, "-c", code.replace('"train", "--help"', '"--help"')],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "  train " in listed.stdout


def test_bench_runs_from_a_checkout_whatever_the_working_directory(tmp_path):
    """benchmarks/ is not installed: `tweetwatch bench` finds it beside the stream package,
    and says in one line that it is missing where it is not there."""
    run = "import sys\nsys.argv = ['tweetwatch', 'bench', 'model', '--help']\n" \
          "from stream.cli import main\nmain()\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path, env=env)
    assert found.returncode == 0, found.stderr
    assert "--batch-sizes" in found.stdout
    blocked = """
import importlib.abc, sys
class NoBenchmarks(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "benchmarks" or name.startswith("benchmarks."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoBenchmarks())
""" + run
    missing = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path, env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        "tweetwatch: error: 'bench' needs benchmarks, which is not installed (they run from a "
        "checkout of the tweetwatch repository)"]
