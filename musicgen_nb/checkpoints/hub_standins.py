"""Stand-ins at the transformers level: code that never imports musicgen-nb runs offline too.

With stand-ins on (``MUSICGEN_NB_STANDIN=1``), :func:`install` makes the
``from_pretrained`` of transformers' models, configs, processors, tokenizers,
feature extractors and generation configs (the base classes and the ``Auto*``
classes, so ``MusicgenForConditionalGeneration``,
``MusicgenMelodyForConditionalGeneration``, ``AutoModelForTextToWaveform``,
``AutoProcessor``, ``AutoTokenizer`` and ``AutoFeatureExtractor`` alike) and
``pipeline(task, model)`` read a MusicGen hub id (``facebook/musicgen-*``, or any
``owner/name`` with "musicgen" in its name) from the folder of its offline stand-in
(:mod:`musicgen_nb.checkpoints.standins`). Every other name, and every call made
while stand-ins are off, goes to transformers unchanged: the wrappers decide at
call time, and without stand-ins nothing is wrapped at all.

A loaded config carries the marker ``musicgen_nb_standin`` (the stand-in's
name) and ``musicgen_nb_requested`` (the hub id asked for), and the first
replacement of a process prints the one-line notice.

Notebook kernels started by nbval or papermill never import musicgen-nb: the
pytest plugin puts a ``sitecustomize`` on their ``PYTHONPATH``
(:mod:`musicgen_nb.checkpoints.standin_startup`)
that calls :func:`install` at interpreter start. :func:`install` imports no
transformers: it waits for the program to import it (an import hook), so a
kernel that never uses transformers pays nothing.

Examples
--------
>>> import contextlib, io
>>> from musicgen_nb.checkpoints.standins import use_standins
>>> with use_standins(), contextlib.redirect_stdout(io.StringIO()):  # the notice
...     folder, standin = hub_name("facebook/musicgen-small")
>>> standin.standin
'standin'
>>> with use_standins(False):
...     hub_name("facebook/musicgen-small")
('facebook/musicgen-small', None)
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import standins
from .specs import short_name

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "hub_name",
    "install",
    "installed",
    "patch_transformers",
]

#: transformers classes whose own ``from_pretrained`` is wrapped (module, class).
_CLASSES = (
    ("transformers.modeling_utils", "PreTrainedModel"),
    ("transformers.configuration_utils", "PreTrainedConfig"),
    ("transformers.configuration_utils", "PretrainedConfig"),
    ("transformers.models.auto.auto_factory", "_BaseAutoModelClass"),
    ("transformers.models.auto.configuration_auto", "AutoConfig"),
    ("transformers.models.auto.processing_auto", "AutoProcessor"),
    ("transformers.models.auto.tokenization_auto", "AutoTokenizer"),
    ("transformers.models.auto.feature_extraction_auto", "AutoFeatureExtractor"),
    ("transformers.processing_utils", "ProcessorMixin"),
    ("transformers.tokenization_utils_base", "PreTrainedTokenizerBase"),
    ("transformers.feature_extraction_utils", "FeatureExtractionMixin"),
    ("transformers.generation.configuration_utils", "GenerationConfig"),
)
_MARK = "_musicgen_nb_standin"
_state = {"hooked": False}


def hub_name(name: Any) -> tuple[Any, standins.Standin | None]:
    """``(what transformers should read, the Standin or None)`` for a ``from_pretrained`` name.

    A MusicGen hub id becomes its stand-in's folder while stand-ins are on. Short
    names (``"small"``), local folders and other models' ids stay as they are.

    Examples
    --------
    >>> from musicgen_nb.checkpoints.standins import use_standins
    >>> with use_standins():
    ...     hub_name("laion/clap-htsat-unfused")
    ('laion/clap-htsat-unfused', None)
    """
    if not isinstance(name, (str, os.PathLike)) or not standins.enabled():
        return name, None
    text = os.fspath(name)
    if not isinstance(text, str) or text.count("/") != 1 or Path(text).exists():
        return name, None
    if short_name(text) is None and "musicgen" not in text.lower():
        return name, None
    folder, standin = standins.resolve(text)
    return (folder, standin) if standin is not None else (name, None)


def _mark(obj: Any, standin: standins.Standin) -> None:
    """Put the stand-in marker on a loaded config (or on the config of a loaded object).

    ``from_pretrained(..., output_loading_info=True)`` (or ``return_unused_kwargs=True``)
    returns a tuple whose first item is the loaded object.
    """
    if isinstance(obj, tuple) and obj:
        obj = obj[0]
    for target in (obj, getattr(obj, "config", None)):
        if target is not None and hasattr(target, "to_dict") and hasattr(target, "model_type"):
            target.musicgen_nb_standin = standin.standin
            target.musicgen_nb_requested = standin.requested


def _wrap_classmethod(cls: type) -> None:
    """Wrap ``cls.from_pretrained`` (defined on ``cls`` itself) with :func:`hub_name`."""
    descriptor = cls.__dict__.get("from_pretrained")
    if not isinstance(descriptor, classmethod) or getattr(descriptor.__func__, _MARK, False):
        return
    original = descriptor.__func__

    @functools.wraps(original)
    def from_pretrained(klass, *args, **kwargs):
        key = "pretrained_model_name_or_path"
        if args:
            new, standin = hub_name(args[0])
            args = (new, *args[1:])
        else:
            new, standin = hub_name(kwargs.get(key))
            if standin is not None:
                kwargs[key] = new
        out = original(klass, *args, **kwargs)
        if standin is not None:
            _mark(out, standin)
        return out

    setattr(from_pretrained, _MARK, True)
    cls.from_pretrained = classmethod(from_pretrained)


def _wrap_pipeline(module: Any) -> Callable[..., Any]:
    """Wrap ``transformers.pipelines.pipeline``: its model, config and tokenizer names."""
    original = module.pipeline
    if getattr(original, _MARK, False):
        return original

    @functools.wraps(original)
    def pipeline(task=None, model=None, *args, **kwargs):
        model, standin = hub_name(model)
        if standin is not None and task is None:  # transformers would ask the hub for the task
            task = "text-to-audio"
        for key in ("config", "tokenizer", "feature_extractor", "processor"):
            if key in kwargs:
                kwargs[key] = hub_name(kwargs[key])[0]
        out = original(task, model, *args, **kwargs)
        if standin is not None:
            _mark(getattr(out, "model", None), standin)
        return out

    setattr(pipeline, _MARK, True)
    module.pipeline = pipeline
    return pipeline


def patch_transformers() -> None:
    """Wrap transformers' ``from_pretrained`` entry points and ``pipeline`` (imports transformers).

    Idempotent. The wrappers pass every call through unchanged while stand-ins are off.

    Examples
    --------
    >>> patch_transformers()
    >>> import transformers
    >>> getattr(transformers.PreTrainedModel.from_pretrained, "_musicgen_nb_standin")
    True
    """
    import importlib

    import transformers

    for module_name, class_name in _CLASSES:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue  # another transformers version: that entry point does not exist
        _wrap_classmethod(cls)
    pipelines = importlib.import_module("transformers.pipelines")
    transformers.pipeline = _wrap_pipeline(pipelines)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Run ``callback`` once, right after the top-level module ``name`` is first imported.

    It stays in ``sys.meta_path`` until the module is executed: a bare
    ``importlib.util.find_spec(name)`` (as libraries do to test for an optional
    package) runs no import, so the hook waits for the real one.
    """

    def __init__(self, name: str, callback: Callable[[Any], None]) -> None:
        self.name, self.callback, self.busy = name, callback, False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or self.busy:
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, finder = spec.loader.exec_module, self

        def run_then_patch(module):
            exec_module(module)
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
                finder.callback(module)

        spec.loader.exec_module = run_then_patch
        return spec


def _safely(name: str, callback: Callable[[Any], None]) -> Callable[[Any], None]:
    """``callback``, but a failure prints one line on stderr instead of breaking ``import name``."""

    def run(module):
        try:
            callback(module)
        except Exception as err:
            print(
                f"musicgen-nb: stand-ins not installed for {name} ({type(err).__name__}: {err}); "
                f"{name} itself is unchanged",
                file=sys.stderr,
            )

    return run


def _when_imported(name: str, callback: Callable[[Any], None]) -> None:
    """``callback(module)`` now if ``name`` is imported, else right after its import.

    A failing ``callback`` prints one line on stderr: the user's import still works.
    """
    callback = _safely(name, callback)
    if name in sys.modules:
        callback(sys.modules[name])
    elif not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, callback))


def install() -> None:
    """Turn on stand-ins for transformers (and ``datasets``) in this process.

    It patches transformers now if it is imported, else right after its import,
    and the same for ``datasets`` (:mod:`musicgen_nb.checkpoints.dataset_standins`).
    Calling it again does nothing.

    Examples
    --------
    >>> install()
    >>> installed()
    True
    """
    if _state["hooked"]:
        return
    _state["hooked"] = True
    _when_imported("transformers", lambda module: patch_transformers())

    def patch_datasets(module):
        from .dataset_standins import patch_datasets

        patch_datasets()

    _when_imported("datasets", patch_datasets)


def installed() -> bool:
    """Whether :func:`install` ran in this process.

    Examples
    --------
    >>> isinstance(installed(), bool)
    True
    """
    return _state["hooked"]
