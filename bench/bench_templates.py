"""Template groups: quality on the synthetic template set, and cost at library scale.

    .venv/bin/python bench/bench_templates.py quality [--templates 40 --variants 4 --distractors 60]
    .venv/bin/python bench/bench_templates.py cost [--library 100000] [--scratch]

quality: renders the labelled set (memesearch/templates/synthetic.py), reads every meme's
caption boxes with the real OCR, extracts features and groups them exactly as the index
stage does; prints pairwise precision/recall, recall per alteration, and features CPU time.

cost: a real SQLite library of --library memes with stored features (random descriptors:
matching cost does not depend on their values, and random ones never verify, like most of a
real library), then real memes added one at a time against it (CPU ms each: features,
candidate scan, verification, saving), the grouping index's memory, and with --scratch a
complete regrouping of the whole library.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import machine_line  # noqa: E402

from memesearch.templates.features import MAX_FEATURES, extract, single_threaded_opencv  # noqa: E402
from memesearch.templates.record import VECTOR_DIM, TemplateFeatures  # noqa: E402
from memesearch.templates.grouping import UnionFind, VectorIndex, find_partners  # noqa: E402
from memesearch.templates.synthetic import render_template_set  # noqa: E402


def machine() -> str:
    return machine_line()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def labelled_features(out: Path, templates: int, variants: int, distractors: int):
    from memesearch.ml.ocr import RapidOcrEngine

    memes = render_template_set(out, templates=templates, variants=variants, distractors=distractors)
    cache = out / "ocr-boxes.json"
    boxes = json.loads(cache.read_text()) if cache.exists() else {}
    ocr = RapidOcrEngine(threads=1)
    features, cpu_ms = {}, []
    for index, meme in enumerate(memes):
        image = Image.open(meme.path).convert("RGB")
        if meme.path.name not in boxes:
            boxes[meme.path.name] = ocr.read(image).boxes
        started = time.process_time()
        features[index] = extract(image, [tuple(box) for box in boxes[meme.path.name]])
        cpu_ms.append((time.process_time() - started) * 1000)
    cache.write_text(json.dumps(boxes))
    return memes, features, cpu_ms


def quality(args) -> None:
    out = Path(args.out or tempfile.mkdtemp(prefix="template-set-"))
    memes, features, cpu_ms = labelled_features(out, args.templates, args.variants, args.distractors)
    index = VectorIndex()
    for meme_id, item in features.items():
        index.add(meme_id, item.vector)
    components = UnionFind()
    verified = find_partners(list(features.items()), index, lambda ids: {i: features[i] for i in ids}, components)
    tp = fp = fn = 0
    missed_by_step: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i, j in itertools.combinations(range(len(memes)), 2):
        truth = memes[i].template is not None and memes[i].template == memes[j].template
        found = components.find(i) == components.find(j)
        tp, fp, fn = tp + (truth and found), fp + (found and not truth), fn + (truth and not found)
        if truth:
            for step in set(memes[i].recipe.split("+")) | set(memes[j].recipe.split("+")):
                key = "caption" if step.startswith("caption") else step
                missed_by_step[key][0] += 1
                missed_by_step[key][1] += found
    print(f"machine: {machine()}")
    print(f"set: {args.templates} templates x (blank + {args.variants} variants) + {args.distractors} distractors "
          f"= {len(memes)} memes, {tp + fn} same-template pairs, {len(memes) * (len(memes) - 1) // 2} pairs")
    print(f"pairwise precision {tp / max(1, tp + fp):.3f}, recall {tp / max(1, tp + fn):.3f} "
          f"(tp {tp}, fp {fp}, fn {fn}); {verified} verifications")
    print(f"features: median {statistics.median(cpu_ms):.1f} ms CPU per meme (image already decoded)")
    print("recall of pairs involving each alteration:")
    for step, (total, found) in sorted(missed_by_step.items()):
        print(f"  {step:<12} {found}/{total} = {found / total:.3f}")


def build_library(store, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    now = time.time()
    with store.write() as conn:
        conn.executemany("INSERT INTO memes (path, sha256, status, added_at, updated_at) VALUES (?, ?, 'ok', ?, ?)",
                         ((f"/library/{i:07d}.jpg", f"{i:064x}", now, now) for i in range(size)))
    ids = [row[0] for row in store.query("SELECT id FROM memes ORDER BY id")]
    for start in range(0, size, 5000):
        chunk = ids[start : start + 5000]
        vectors = rng.normal(size=(len(chunk), VECTOR_DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = []
        for meme_id, vector in zip(chunk, vectors):
            features = TemplateFeatures(vector, rng.uniform(0, 480, (MAX_FEATURES, 2)).astype(np.float32),
                                        rng.integers(0, 256, (MAX_FEATURES, 32), dtype=np.uint8))
            rows.append((meme_id, 1, *features.to_bytes()))
        with store.write() as conn:
            conn.executemany("INSERT INTO template_features (meme_id, version, vector, points, descriptors, grouped) "
                             "VALUES (?, ?, ?, ?, ?, 1)", rows)
            conn.executemany("INSERT INTO stages (meme_id, stage, status, updated_at) VALUES (?, 'templates', 'done', ?)",
                             ((meme_id, now) for meme_id in chunk))


def cost(args) -> None:
    from memesearch.store.sqlite import SqliteStore
    from memesearch.store.templates import TemplateStore
    from memesearch.templates.stage import run_grouping

    out = Path(args.out or tempfile.mkdtemp(prefix="template-set-"))
    memes, features, _ = labelled_features(out, 8, 4, 0)
    work = Path(tempfile.mkdtemp(prefix="template-cost-"))
    store = SqliteStore(work / "library.db")
    started = time.perf_counter()
    build_library(store, args.library)
    print(f"machine: {machine()}")
    print(f"library: {args.library} memes with stored features, built in {time.perf_counter() - started:.0f} s, "
          f"database {os.path.getsize(work / 'library.db') / 1e6:.0f} MB")
    templates = TemplateStore(store)

    before = rss_mb()
    started = time.perf_counter()
    ids, matrix = templates.vectors()
    index = VectorIndex.from_matrix(ids, matrix)
    del matrix
    print(f"grouping index: loaded in {time.perf_counter() - started:.2f} s, {rss_mb() - before:.0f} MB resident")

    components = UnionFind()
    add_ms, parts, verified = [], [], 0
    new_ids = []
    for position, meme in enumerate(memes):
        image = Image.open(meme.path).convert("RGB")
        boxes = json.loads((out / "ocr-boxes.json").read_text())[meme.path.name]
        with store.write() as conn:
            meme_id = conn.execute("INSERT INTO memes (path, status, added_at, updated_at) VALUES (?, 'ok', 0, 0) "
                                   "RETURNING id", (str(meme.path),)).fetchone()[0]
        started = time.process_time()
        item = extract(image, [tuple(box) for box in boxes])
        t_features = time.process_time()
        templates.put_features(meme_id, item)
        index.add(meme_id, item.vector)
        t_saved = time.process_time()
        verified += find_partners([(meme_id, item)], index, templates.features_of, components)
        t_matched = time.process_time()
        changed = [c for c in components.sets(min_size=2, members=set(new_ids + [meme_id])) if meme_id in c]
        templates.save_grouping([meme_id], changed)
        done = time.process_time()
        add_ms.append((done - started) * 1000)
        parts.append(((t_features - started) * 1000, (t_saved - t_features) * 1000,
                      (t_matched - t_saved) * 1000, (done - t_matched) * 1000))
        new_ids.append(meme_id)
    groups = [g for g in templates.groups() if g["size"] > 1]
    print(f"adding one meme to the {args.library}-meme library: median {statistics.median(add_ms):.1f} ms CPU, "
          f"max {max(add_ms):.1f} ms over {len(add_ms)} real memes (features + scan + {verified / len(add_ms):.1f} "
          f"verifications + save); {len(groups)} groups formed from 8 templates")
    medians = [statistics.median(p[k] for p in parts) for k in range(4)]
    print("  median ms CPU: features {:.1f}, storing them {:.1f}, candidates + verification {:.1f}, "
          "saving the group {:.1f}".format(*medians))

    if args.scratch:
        with store.write() as conn:
            conn.execute("UPDATE template_features SET grouped = 0, group_id = NULL")
            conn.execute("DELETE FROM template_groups")
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started, cpu = time.perf_counter(), time.process_time()
        looked_at = run_grouping(store)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"regrouping all {looked_at} memes from scratch: {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU, "
              f"peak RSS {peak:.0f} MB (before: {peak_before:.0f} MB); {len(templates.groups())} groups")
    store.close()


def main() -> None:
    single_threaded_opencv().__enter__()  # as the index stage runs it
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--templates", type=int, default=40)
    q.add_argument("--variants", type=int, default=4)
    q.add_argument("--distractors", type=int, default=60)
    q.add_argument("--out", help="where to render the set (reused, with its OCR boxes, when it exists)")
    c = sub.add_parser("cost")
    c.add_argument("--library", type=int, default=100_000)
    c.add_argument("--scratch", action="store_true", help="also regroup the whole library from scratch")
    c.add_argument("--out")
    args = parser.parse_args()
    quality(args) if args.what == "quality" else cost(args)


if __name__ == "__main__":
    main()
