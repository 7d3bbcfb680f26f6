"""Calibrates the vector relevance floor of an embedder (default MiniLM) on the sample memes.

Documents are the sample meme captions (what OCR reads from them); queries are (a) real
searches, each written for one caption without reusing its 3-word runs, and (b) nonsense
strings. The floor must lie above the best cosine any nonsense query reaches and below the
cosine real queries reach on their meme. Prints both distributions and the margin.

    PYTHONPATH=. python bench/calibrate_relevance_floor.py [--home DIR]
"""

from __future__ import annotations

import argparse
import random
import string
import tempfile
from pathlib import Path

import numpy as np

from memesearch.app import Core
from memesearch.config import Settings
from memesearch.library.sample_captions import ENGLISH_CAPTIONS

# (query, a word that must appear in the intended caption)
REAL = [
    ("code that works for unknown reasons", "no idea why"), ("putting off fixing bugs", "fix that bug"),
    ("explaining a movie to grandma", "grandmother"), ("printer broken on friday", "printer"),
    ("internet cuts out in a video call", "wifi"), ("cat pushing things off the table", "cats knocking"),
    ("shipping code on the weekend", "production"), ("pizza delivery", "pizza"),
    ("happy houseplants", "plants"), ("reading the manual first", "documentation"),
    ("dog in sunglasses", "sunglasses"), ("pointless meeting", "meeting"),
    ("always tired", "tired"), ("nap instead of studying", "nap"),
    ("intern broke the repository", "intern"), ("grandmother replies to everyone", "reply all"),
    ("raccoon theft", "raccoon"), ("bored on the weekend", "ceiling fan"),
    ("everything is on fire but fine", "this is fine"), ("automation takes longer than the task", "automating"),
    ("bread baking", "sourdough"), ("penguin ready to fight", "penguin"),
    ("no money after buying furniture", "bank account"), ("semicolon bug", "semicolon"),
    ("fish judging you", "goldfish"), ("before and after", "how it started"),
    ("selfie camera by accident", "front camera"), ("good music while late", "playlist"),
]


def nonsense(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    fixed = ["xyzzyqwv", "asdfghjkl", "qwertyuiop", "zxcvbnm", "blorptank frizzle", "xkcd qqq zzz",
             "plugh", "vvvvvvvv", "hjkl hjkl", "qqqqq wwwww", "zqxj", "grbl flrb", "mnbvcxz lkjh"]
    random_words = [
        " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 10)))
                 for _ in range(rng.randint(1, 3)))
        for _ in range(count - len(fixed))
    ]
    return fixed + random_words


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp()) / "data"
    core = Core(Settings(home=home, threads=1))
    embedder = core.embedder
    captions = list(ENGLISH_CAPTIONS)
    documents = embedder.embed(captions)
    print(f"embedder {embedder.model_id}, {len(captions)} sample captions, current floor {embedder.relevance_floor}")

    real_scores = []
    for query, marker in REAL:
        target = next(i for i, c in enumerate(captions) if marker in c)
        score = float(documents[target] @ embedder.embed_queries([query])[0])
        real_scores.append(score)
    junk = nonsense(60)
    junk_best = [float((documents @ embedder.embed_queries([q])[0]).max()) for q in junk]

    def show(name: str, values: list[float]) -> None:
        v = np.array(values)
        print(f"{name:34s} n={len(v):3d} min={v.min():.3f} p10={np.percentile(v, 10):.3f} "
              f"median={np.median(v):.3f} max={v.max():.3f}")

    show("real query -> its meme", real_scores)
    lowest = sorted(zip(real_scores, [q for q, _ in REAL]))[:4]
    print("lowest real:", ", ".join(f"{q!r} {s:.3f}" for s, q in lowest))
    show("nonsense -> best meme", junk_best)
    worst = sorted(zip(junk_best, junk), reverse=True)[:5]
    print("highest nonsense:", ", ".join(f"{q!r} {s:.3f}" for s, q in worst))
    for floor in (0.2, 0.25, 0.3, 0.32, 0.33, 0.35, 0.4):
        kept = sum(s >= floor for s in real_scores)
        leaked = sum(s >= floor for s in junk_best)
        print(f"floor {floor:.2f}: real queries kept {kept}/{len(real_scores)}, nonsense with results {leaked}/{len(junk_best)}")


if __name__ == "__main__":
    main()
