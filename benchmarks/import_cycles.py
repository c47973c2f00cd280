"""The largest import cycle among nnopt's modules (issue 24): strongly connected components of
the graph of ``nnopt`` imports in ``src/``, at module level and inside functions (an import
inside a function only delays the cycle; imports under ``if TYPE_CHECKING`` are left out).

    python benchmarks/import_cycles.py [SRC]      # SRC: a src/ folder, default ./src

Prints the sizes of the largest components and PASS when no cycle spans more than one module
and its package (``from nnopt.report import plots`` counts as an edge to the package).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def edges(root: Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted((root / "nnopt").rglob("*.py")):
        mod = module_name(root, path)
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[mod] |= {a.name for a in node.names if a.name.startswith("nnopt")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                if base.startswith("nnopt"):
                    graph[mod].add(base)
    return graph


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    nodes = set(graph) | {t for ts in graph.values() for t in ts}
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return sorted(out, key=len, reverse=True)


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    comps = components(edges(root))
    print("largest components:", [len(c) for c in comps[:5]])
    big = comps[0]
    print("largest:", ", ".join(big[:12]) + (" ..." if len(big) > 12 else ""))
    only_package = len(big) <= 2 and all(m.startswith(min(big, key=len)) for m in big)
    ok = len(big) == 1 or only_package
    print(f"{'PASS' if ok else 'FAIL'}: no import cycle between modules")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
