"""A generated corpus in the layout of bbc-fulltext.zip (never the BBC text itself).

Each class draws most words from its own topical vocabulary, so a bag-of-words model
can learn it; the archive also carries what the real one has: a README, a latin-1 file
and exact duplicates.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

TOPICS = {
    "business": "shares profits company dividend investors analysts sales costs interest rates "
    "market bank economy firm growth prices quarterly forecasts operating margin",
    "entertainment": "film actor award music band album star oscar director festival singer "
    "comedy show chart cinema theatre television series premiere stage",
    "politics": "minister election labour party government vote parliament tory policy campaign "
    "leader tax reform mps commons secretary spokesman opposition manifesto",
    "sport": "striker league champions manager season cup derby title injuries defenders match "
    "goal coach players win final club tournament squad",
    "tech": "handset chip software broadband online mobile networks computers phones users "
    "internet digital devices system download technology firm service web",
}
COMMON = "the a of and to in said it was for on is that with as year new"


def article(rng: random.Random, label: str, words: int = 90) -> str:
    topical = TOPICS[label].split()
    common = COMMON.split()
    body = [rng.choice(topical if rng.random() < 0.6 else common) for _ in range(words)]
    return f"{label.title()} report {rng.randrange(10**6)}\n\n{' '.join(body)}.\n"


def write_bbc_zip(path: Path, per_class: int = 40, seed: int = 7) -> Path:
    """Write ``bbc/<class>/NNN.txt`` for every class, plus the real archive's oddities."""
    rng = random.Random(seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bbc/README.TXT", "Generated corpus in the BBC layout.\n")
        for label in TOPICS:
            texts = [article(rng, label) for _ in range(per_class)]
            texts.append(texts[0])  # an exact duplicate, as in the real archive
            for index, text in enumerate(texts, start=1):
                encoding = "latin-1" if (label == "sport" and index == 2) else "utf-8"
                body = text + (" caf\u00e9" if encoding == "latin-1" else "")
                archive.writestr(f"bbc/{label}/{index:03d}.txt", body.encode(encoding))
    return path
