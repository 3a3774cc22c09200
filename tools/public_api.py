"""Which callables of the public API lack type annotations (the package ships ``py.typed``).

The public surface is every name in ``musicgen_nb.__all__`` and in the ``__all__`` of the
subpackages and modules listed in ``MODULES``, plus the public methods and properties of the
public classes among them (with the dunders in ``DUNDERS``). Names re-exported from other
libraries are skipped; ``self`` and ``cls`` need no annotation; a property needs a return
annotation.

    python tools/public_api.py      # prints ``module.qualname(param)`` for each gap; exit 1 if any

A test calls :func:`unannotated_public_callables` and expects ``[]``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "musicgen_nb"
#: The modules whose ``__all__`` is public, besides ``musicgen_nb`` itself.
MODULES = [
    "audio", "patterns", "melody", "tokens", "metrics", "finetune", "viz", "players", "ui",
    "testing", "grids", "generation", "streaming", "engine", "checkpoints", "attention",
    "conditioning", "trace", "teaching", "sweeps", "models",
]  # fmt: skip
#: Dunders that belong to the public surface of a class.
DUNDERS = {"__init__", "__call__", "__iter__", "__next__", "__len__", "__getitem__"}
#: Parameters that need no annotation.
IMPLICIT = {"self", "cls"}


def ours(obj: object) -> bool:
    """Whether ``obj`` is defined in musicgen_nb (not re-exported from another library)."""
    module = getattr(obj, "__module__", None) or ""
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def public_objects() -> Iterator[object]:
    """Every function and class named in a public ``__all__``, each once."""
    seen: set[int] = set()
    for name in [PACKAGE] + [f"{PACKAGE}.{m}" for m in MODULES]:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and ours(obj):
                if id(obj) not in seen:
                    seen.add(id(obj))
                    yield obj


def members(cls: type) -> Iterator[tuple[str, Callable, bool]]:
    """``(qualified name, function, is_property)`` of the public methods of ``cls``.

    Methods inherited from another musicgen_nb class count; those of other libraries
    (``object``, ``torch.nn.Module``, ``Exception``...) do not.
    """
    done: set[str] = set()
    for klass in cls.__mro__:
        if not ours(klass):
            continue
        for name, value in vars(klass).items():
            if name in done or (name.startswith("_") and name not in DUNDERS):
                continue
            done.add(name)
            qual = f"{cls.__module__}.{cls.__qualname__}.{name}"
            if isinstance(value, property):
                if value.fget is not None:
                    yield qual, value.fget, True
            elif isinstance(value, (staticmethod, classmethod)):
                yield qual, value.__func__, False
            elif hasattr(value, "func") and type(value).__name__ == "cached_property":
                yield qual, value.func, True
            elif inspect.isfunction(value) and ours(value):
                yield qual, value, False


def gaps(qual: str, fn: Callable, is_property: bool = False) -> list[str]:
    """``qual(param)`` for each unannotated parameter of ``fn``, ``qual(return)`` for its return."""
    try:
        sig = inspect.signature(fn, follow_wrapped=True)
    except (TypeError, ValueError):
        return [f"{qual}(signature unreadable)"]
    out = []
    if not is_property:
        for p in sig.parameters.values():
            if p.annotation is inspect.Parameter.empty and p.name not in IMPLICIT:
                out.append(f"{qual}({p.name})")
    if sig.return_annotation is inspect.Signature.empty:
        out.append(f"{qual}(return)")
    return out


def unannotated_public_callables() -> list[str]:
    """``module.qualname(param)`` for every missing annotation of the public API, sorted."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    found: set[str] = set()
    for obj in public_objects():
        if inspect.isclass(obj):
            for qual, fn, is_property in members(obj):
                found.update(gaps(qual, fn, is_property))
        else:
            found.update(gaps(f"{obj.__module__}.{obj.__qualname__}", obj))
    return sorted(found)


def main() -> int:
    missing = unannotated_public_callables()
    for entry in missing:
        print(entry)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
