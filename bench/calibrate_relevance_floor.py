"""Calibrates the vector relevance floor of an embedder (default MiniLM) on the sample memes.

Documents are the sample meme captions (what OCR reads from them); queries are (a) real
searches, each written for one caption without reusing its 3-word runs, and (b) nonsense
strings. The floor must lie above the best cosine any nonsense query reaches and below the
cosine real queries reach on their meme. Prints both distributions and the margin.

    PYTHONPATH=. python bench/calibrate_relevance_floor.py [--home DIR]

``--visual`` calibrates the two floors of the visual model instead (``MEMESEARCH_VISUAL_MODEL``,
which must be pulled into ``--home``): the text-to-image ``relevance_floor`` (the same queries
against the rendered sample memes' pictures) and search by image's ``image_floor`` (a
screenshot of each meme against that meme, and against the nearest other meme). Set the
chosen values per model in ``<home>/models.yml``.

    PYTHONPATH=. python bench/calibrate_relevance_floor.py --visual --home DIR
"""

from __future__ import annotations

import argparse
import random
import string
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

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


def show(name: str, values: list[float]) -> None:
    v = np.array(values)
    print(f"{name:34s} n={len(v):3d} min={v.min():.3f} p10={np.percentile(v, 10):.3f} "
          f"median={np.median(v):.3f} max={v.max():.3f}")


def floors(kept_name: str, kept: list[float], leaked_name: str, leaked: list[float], candidates) -> None:
    for floor in candidates:
        print(f"floor {floor:.2f}: {kept_name} kept {sum(s >= floor for s in kept)}/{len(kept)}, "
              f"{leaked_name} {sum(s >= floor for s in leaked)}/{len(leaked)}")


def calibrate_visual(home: Path) -> None:
    """Both floors of the installed visual model, on rendered sample memes."""
    from memesearch.library.samples import render_sample_memes
    from memesearch.templates import synthetic
    from memesearch.visual.model import load_visual_model

    visual = load_visual_model(Settings(home=home, threads=1))
    if visual is None:
        raise SystemExit(f"no visual model installed in {home}: run `memesearch --data-dir {home} models pull clip-vit-b-32`")
    memes = render_sample_memes(Path(tempfile.mkdtemp()) / "memes", count=100, seed=3)
    pictures = [Image.open(m.path).convert("RGB") for m in memes]
    vectors = visual.embed_images(pictures)
    print(f"visual model {visual.model_id}, {len(memes)} sample memes, "
          f"floors now: relevance {visual.relevance_floor}, image {visual.image_floor}")

    real = [float(vectors[i] @ visual.embed_texts([query])[0]) for query, marker in REAL
            for i in [next((i for i, m in enumerate(memes) if marker in m.text.lower()), None)] if i is not None]
    junk_best = [float((vectors @ visual.embed_texts([q])[0]).max()) for q in nonsense(60)]
    show("real query -> its meme's picture", real)
    show("nonsense -> best picture", junk_best)
    floors("real queries", real, "nonsense with results", junk_best, (0.18, 0.2, 0.22, 0.24, 0.26, 0.28, 0.3))

    own, other = [], []
    for index, picture in enumerate(pictures):  # a phone screenshot: cut a little, framed, re-compressed
        shot = synthetic.frame(synthetic.crop(synthetic.resize(picture, 0.8), 0.03, 0.02, 0.02, 0.03), 0.06, (24, 26, 30))
        cosines = vectors @ visual.embed_images([shot])[0]
        own.append(float(cosines[index]))
        other.append(float(np.delete(cosines, index).max()))
    show("screenshot -> its meme", own)
    show("screenshot -> nearest other meme", other)
    floors("screenshots", own, "other memes above", other, (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--visual", action="store_true", help="calibrate the visual model's two floors")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp()) / "data"
    if args.visual:
        calibrate_visual(home)
        return
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

    show("real query -> its meme", real_scores)
    lowest = sorted(zip(real_scores, [q for q, _ in REAL]))[:4]
    print("lowest real:", ", ".join(f"{q!r} {s:.3f}" for s, q in lowest))
    show("nonsense -> best meme", junk_best)
    worst = sorted(zip(junk_best, junk), reverse=True)[:5]
    print("highest nonsense:", ", ".join(f"{q!r} {s:.3f}" for s, q in worst))
    floors("real queries", real_scores, "nonsense with results", junk_best, (0.2, 0.25, 0.3, 0.32, 0.33, 0.35, 0.4))


if __name__ == "__main__":
    main()
