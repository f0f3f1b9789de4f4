"""``python -m cdl_gitlab.serving.seldon_launch ARGS``: seldon-core-microservice without
TensorFlow, for models that do not need it (PyTorch).

seldon-core imports TensorFlow at start-up whenever it is installed
(``seldon_core.imports_helper``: ``from tensorflow import make_ndarray``, for TensorFlow's
tensor protos and the ``tftensor`` payload): 4-8 s before the server answers, in an
environment that holds the Keras extra beside PyTorch. This entry point hides TensorFlow while
seldon-core looks for it, so seldon-core uses the tensor protos it ships (as in the PyTorch
serving images, which have no TensorFlow), then runs ``seldon_core.microservice`` as
``python -m seldon_core.microservice ARGS`` would.
"""

from __future__ import annotations

import importlib
import runpy
import sys

_HIDDEN = "tensorflow"


def import_seldon_without_tensorflow() -> None:
    """Import ``seldon_core.imports_helper`` while ``import tensorflow`` fails; TensorFlow is
    importable again afterwards (nothing of it was loaded)."""
    if _HIDDEN in sys.modules:
        return  # loaded already: seldon-core finds it whatever this does
    sys.modules[_HIDDEN] = None  # type: ignore[assignment]  # `import tensorflow` -> ImportError
    try:
        importlib.import_module("seldon_core.imports_helper")
    finally:
        if sys.modules.get(_HIDDEN, ...) is None:
            del sys.modules[_HIDDEN]


def main() -> None:
    import_seldon_without_tensorflow()
    runpy.run_module("seldon_core.microservice", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
