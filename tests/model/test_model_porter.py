"""The Porter stemmer loaded without ``nltk/__init__``: NLTK's stems, NLTK left untouched.

Each check runs in a fresh interpreter, since what it checks is what a process has imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

WORDS = (
    "Running runners ran generously organized organizations happily caresses ponies "
    "conditional relational hopefulness electricity agreed disabled matting sized "
    "Shares rose record quarterly profits Ministers election goalkeeper broadband"
)


def _run(code: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_stems_are_nltks_and_nltk_is_not_imported() -> None:
    found = _run(
        "import json, sys\n"
        "from cdl_gitlab.features.text import stems\n"
        f"ours = stems({WORDS!r})\n"
        "loaded = sorted(m for m in sys.modules if m == 'nltk' or m.startswith('nltk.'))\n"
        "heavy = [m for m in ('scipy.stats', 'sklearn') if m in sys.modules]\n"
        "from nltk.stem import PorterStemmer\n"
        "from cdl_gitlab.features.text import tokenize\n"
        f"theirs = [PorterStemmer().stem(t) for t in tokenize({WORDS!r})]\n"
        "print(json.dumps({'ours': ours, 'theirs': theirs, 'loaded': loaded, 'heavy': heavy}))\n"
    )
    assert found["ours"] == found["theirs"]
    assert found["ours"][:3] == ["run", "runner", "ran"]
    assert found["loaded"] == []  # nothing of NLTK stays behind, stand-ins included
    assert found["heavy"] == []


def test_nltk_imported_later_is_the_whole_package() -> None:
    found = _run(
        "import json\n"
        "from cdl_gitlab.features.porter import porter_stemmer\n"
        "stemmer = porter_stemmer()\n"
        "import nltk\n"
        "from nltk.stem.porter import PorterStemmer\n"
        "print(json.dumps({'init_ran': hasattr(nltk, 'word_tokenize'),\n"
        "    'version': nltk.__version__, 'class': type(stemmer).__qualname__,\n"
        "    'stem': PorterStemmer().stem('generously') == stemmer.stem('generously')}))\n"
    )
    assert found["init_ran"] is True
    assert found["version"][0].isdigit()
    assert found["class"] == "PorterStemmer"
    assert found["stem"] is True


def test_with_nltk_imported_already_the_ordinary_import_is_used() -> None:
    found = _run(
        "import json, nltk\n"
        "from cdl_gitlab.features.porter import porter_stemmer\n"
        "from nltk.stem.porter import PorterStemmer\n"
        "print(json.dumps({'same_class': type(porter_stemmer()) is PorterStemmer}))\n"
    )
    assert found["same_class"] is True
