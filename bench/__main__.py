"""`python -m bench` (`make bench`): run every benchmark module in bench/, one after another.

Each runs in its own Python process, so one benchmark's setup (databases, servers, caches) cannot
colour the next one's figures. A module is a benchmark when it defines `main()`; names starting with
an underscore are helpers.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _is_benchmark(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def main() -> int:
    names = sorted(
        info.name
        for info in pkgutil.iter_modules([str(HERE)])
        if not info.name.startswith("_") and _is_benchmark(HERE / f"{info.name}.py")
    )
    failed: list[str] = []
    for name in names:
        print(f"=== bench.{name}", flush=True)
        result = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=HERE.parent, check=False)
        if result.returncode != 0:
            failed.append(name)
        print(flush=True)
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
