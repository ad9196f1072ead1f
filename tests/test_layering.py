"""The arrows of docs/ARCHITECTURE.md: analysis never imports roar, sweep, torch or ray; roar imports only
the torch-free leaves of analysis and nothing of sweep."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ANALYSIS_LEAVES = {"analysis", "analysis.schema", "analysis.contract", "analysis.layout", "analysis.stats"}


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(ROOT).parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "roar").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_roar_imports_only_the_torch_free_leaves_of_analysis(path):
    imported = _imports(path)
    assert not {m for m in imported if m.split(".")[0] == "sweep"}
    assert {m for m in imported if m.split(".")[0] == "analysis"} <= ANALYSIS_LEAVES


def test_analysis_runs_without_roar_sweep_torch_or_ray():
    code = ("import sys, importlib, pkgutil, analysis\n"
            "for m in [m for m in pkgutil.iter_modules(analysis.__path__) if m.name != '__main__']:\n"
            "    importlib.import_module('analysis.' + m.name)\n"
            "a = analysis.analyze(analysis.fake_results(seed=0, n_seeds=3))\n"
            "print(sorted(n for n in ('torch', 'ray', 'roar', 'sweep', 'captum') if n in sys.modules))\n"
            "print(len(a.tables))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded, tables = done.stdout.strip().splitlines()[-2:]
    assert loaded == "[]" and int(tables) > 5
