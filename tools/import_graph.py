"""Print the package's import graph by concern, and its cycles.

Every import counts, including those inside functions. Modules are grouped by their
first name under ``musicgen_nb`` (``musicgen_nb.generation.request`` -> ``generation``),
so the output reads as the layers of ``docs/architecture.md``.

Usage::

    python tools/import_graph.py              # this checkout
    python tools/import_graph.py --root DIR   # another checkout (for example an older commit)
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict


def concern(module: str) -> str:
    """``musicgen_nb.generation.request`` -> ``generation``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def concern_graph(package: str = "musicgen_nb") -> dict[str, set[str]]:
    """Edges between concerns: ``{importer: {imported, ...}}``, self-edges left out."""
    import grimp

    graph = grimp.build_graph(package, cache_dir=None)
    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = concern(module), concern(imported)
            if a != b:
                edges[a].add(b)
        edges.setdefault(concern(module), set())
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one concern (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="checkout whose musicgen_nb to read (default: installed)")
    args = parser.parse_args(argv)
    if args.root:
        sys.path.insert(0, args.root)
    edges = concern_graph()
    for a in sorted(edges):
        print(f"{a:14s} -> {', '.join(sorted(edges[a])) or '-'}")
    found = cycles(edges)
    print(f"\ncycles: {len(found)}")
    for comp in found:
        print("  " + " <-> ".join(comp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
