"""NLTK's Porter stemmer, loaded without running ``nltk/__init__``.

``from nltk.stem import PorterStemmer`` runs ``nltk/__init__``, which imports all of NLTK and
with it scipy.stats and scikit-learn: 1.5-2 s of every process that stems (training,
evaluation, compression, each model server worker), for one class whose own imports are a few
small NLTK modules (``nltk.stem.api``, ``nltk.redos``, ``nltk.termsec``).

:func:`porter_stemmer` imports ``nltk.stem.porter`` under stand-in parent packages (empty
modules with NLTK's ``__path__``, so the ``__init__`` files do not run) and afterwards removes
every ``nltk`` module it added from ``sys.modules``: a later ``import nltk`` loads the real
package from scratch. The class is NLTK's own, so the stems are NLTK's (its default
``NLTK_EXTENSIONS`` mode), the ones trained vocabularies hold. When NLTK is imported already,
or its layout does not allow this, the ordinary import is used.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()


def _ordinary() -> Any:
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


def _nltk_module(name: str) -> bool:
    return name == "nltk" or name.startswith("nltk.")


def porter_stemmer() -> Any:
    """A new ``nltk.stem.porter.PorterStemmer`` (ModuleNotFoundError without NLTK)."""
    with _LOCK:
        if any(_nltk_module(name) for name in sys.modules):
            return _ordinary()
        spec = importlib.util.find_spec("nltk")
        if spec is None:
            raise ModuleNotFoundError("No module named 'nltk'", name="nltk")
        locations = list(spec.submodule_search_locations or [])
        stem_dirs = [str(Path(folder) / "stem") for folder in locations]
        if not any(Path(folder).is_dir() for folder in stem_dirs):
            return _ordinary()
        for name, path in (("nltk", locations), ("nltk.stem", stem_dirs)):
            stand_in = types.ModuleType(name)
            stand_in.__path__ = path
            stand_in.__package__ = name
            sys.modules[name] = stand_in
        try:
            stemmer = importlib.import_module("nltk.stem.porter").PorterStemmer()
        except (ImportError, AttributeError):
            stemmer = None  # a layout this does not know: NLTK's own import below
        finally:
            for name in [name for name in sys.modules if _nltk_module(name)]:
                del sys.modules[name]
    return stemmer if stemmer is not None else _ordinary()
