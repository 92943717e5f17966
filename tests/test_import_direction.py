"""The runtime CLI imports no training, research or benchmark code (docs/architecture.md).

Each check runs in a fresh interpreter, so modules loaded by other tests cannot hide a
regression.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("torch", "gensim", "model_export", "research", "benchmarks", "stream.bench",
             "matplotlib")


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
