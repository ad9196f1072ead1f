"""Today's store code, for the side-by-side ``store`` benchmark: the modules as they were at ``TODAY``
(per-file reads everywhere), loaded from git into a private namespace, so the baseline is the real
code, not a re-implementation. Unavailable (and the baseline rows skipped) without the git history.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

TODAY = "441557a"   # the last commit before the row index and incremental compaction (issue 15)
# path at TODAY -> module name here; relative imports are pointed at these names or the packages
MODULES = {"sweep/rows.py": "today_rows", "sweep/compact.py": "today_compact", "sweep/status.py": "today_status",
           "sweep/verify.py": "today_verify", "analysis/io.py": "today_io"}
IMPORTS = {"from . import rows": "import today_rows as rows", "from .grid import": "from sweep.grid import",
           "from .spec import": "from sweep.spec import", "from .schema import": "from analysis.schema import",
           "from .scoring import": "from analysis.scoring import"}


def _source(path: str) -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(["git", "show", f"{TODAY}:{path}"], cwd=root, capture_output=True, text=True,
                          check=True, timeout=30).stdout


def load_today() -> SimpleNamespace:
    """The TODAY modules as attributes (rows, compact, status, verify, io). Raises RuntimeError with the
    reason when git or the commit is missing."""
    try:
        sources = {name: _source(path) for path, name in MODULES.items()}
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"today's code ({TODAY}) is not in this checkout's git history: {exc}") from exc
    folder = tempfile.mkdtemp(prefix="roar-today-")
    modules = {}
    for name, text in sources.items():
        for old, new in IMPORTS.items():
            text = text.replace(old, new)
        path = os.path.join(folder, f"{name}.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    for name in ["today_rows", *[n for n in sources if n != "today_rows"]]:  # rows first: the others import it
        spec = importlib.util.spec_from_file_location(name, os.path.join(folder, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules[name[len("today_"):]] = module
    return SimpleNamespace(**modules)
