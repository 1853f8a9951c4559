"""List the functions longer than N lines (default 50) in a package, longest first.

    python scripts/long_functions.py descend [--over 50]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--over", type=int, default=50)
    args = p.parse_args()
    rows = []
    for path in sorted(args.root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > args.over:
                    rows.append((n, node.name, f"{path}:{node.lineno}"))
    for n, name, where in sorted(rows, reverse=True):
        print(f"{n:4d}  {name:<28} {where}")


if __name__ == "__main__":
    main()
