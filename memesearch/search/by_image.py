"""Search by image: the meme a picture came from first, then the memes made from the same picture.

Works with no model downloaded. The evidence, strongest first; a weaker kind never
outranks a stronger one:

1. ``exact``: the same bytes (sha256).
2. ``duplicate``: the same meme re-saved, resized, re-compressed, cropped or screenshotted:
   its caption reads the same as the query's (OCR) and its picture verifies (below). Memes
   that are mostly words on a plain background have too little picture for that, so memes
   with the query's caption (keyword search) or within DUPLICATE_BITS of its perceptual hash
   are compared whole, caption included (``_looks_same``). Without OCR the hash alone decides.
3. ``template``: the base picture is shared whatever the caption: template features of
   the query (caption boxes found by OCR masked, as when indexing) verified geometrically
   against candidates from the colour-layout vectors (``templates.matching.verify``); then
   the other members of those memes' template groups.
4. ``similar``: only when an image–text model is installed, its nearest memes by image
   vector above its spec's ``image_floor``, ranked by reciprocal rank fusion with the colour layout.

Anything else is left out, so an unrelated picture finds nothing rather than random memes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

from PIL import Image

from memesearch.errors import InvalidInputError, ModelUnavailableError
from memesearch.library.decode import probe_bytes
from memesearch.library.hashing import dhash
from memesearch.search.close_hashes import close_hashes
from memesearch.search.engine import MAX_LIMIT, SearchHit, SearchResult, rrf_fuse
from memesearch.store.templates import TemplateStore
from memesearch.text import spaceless

log = logging.getLogger(__name__)

MODE = "image"
KINDS = ("exact", "duplicate", "template", "similar")
#: A perceptual hash this close is the same picture re-saved (64-bit dHash; unrelated pictures
#: differ in about 32 bits). Stricter than the meme page's 10: a search must not offer a lookalike as the meme.
DUPLICATE_BITS = 6
#: Memes nearest by colour layout that are verified with local features (a query is one meme
#: against the library, so it can afford more than the 12 of grouping).
CANDIDATES = 40
#: Caption similarity (difflib ratio of the letters) from which a match is the same meme, not a
#: sibling: unrelated captions score about 0.3, one read from a crop or a smaller copy 0.8 or more.
SAME_CAPTION = 0.6
#: Captions are compared on their first letters only (the ratio is quadratic in length).
MAX_CAPTION_CHARS = 400
#: Captions this long (letters, spaces aside) are specific enough to look a meme up by.
MIN_CAPTION_CHARS = 12
MAX_CAPTION_WORDS = 16
#: Memes with the query's caption compared image to image (each is read from disk).
CAPTION_CANDIDATES = 5
#: Colour-layout cosine two images of one meme keep (the same caption on another picture falls below).
SAME_LOOK = 0.8
_WORDS = re.compile(r"\w+")
#: How many CLIP neighbours are read before the floor.
CLIP_DEPTH = 200
#: Scores per kind: each kind has its own band, so scores sort like the tiers.
_BANDS = {"exact": (1.0, 1.0), "duplicate": (0.8, 0.99), "template": (0.5, 0.79), "similar": (0.0, 0.49)}


@dataclass
class ImageSearchResult(SearchResult):
    """A ``SearchResult`` (the same JSON as text search) that also knows why each hit matched."""

    kinds: dict[int, str] = field(default_factory=dict)


@dataclass
class _Query:
    image: Image.Image
    sha256: str
    phash: str
    caption: str | None  # None: not read (OCR is off), so captions cannot be compared
    boxes: list


def search_by_image(core, data: bytes, *, name: str = "the image", limit: int = 10, offset: int = 0) -> ImageSearchResult:
    """Memes matching the picture in ``data``, best first. A file that is not a readable image
    (or too large) is an ``InvalidInputError`` naming ``name``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be between 1 and {MAX_LIMIT} (got {limit})")
    if offset < 0:
        raise InvalidInputError(f"offset cannot be negative (got {offset})")
    started = time.perf_counter()
    query = _read_query(core, data, name)
    ranked = rank_matches(core, query)
    window = ranked[offset : offset + limit]
    memes = {meme.id: meme for meme in core.store.get_memes([meme_id for meme_id, _, _ in window])}
    hits = [SearchHit(id=meme_id, path=memes[meme_id].path, score=score, ocr_text=memes[meme_id].ocr_text,
                      description=memes[meme_id].description, user_description=memes[meme_id].user_description,
                      tags=memes[meme_id].tags, format=memes[meme_id].format)
            for meme_id, score, _ in window if meme_id in memes]
    return ImageSearchResult(query=name, mode=MODE, hits=hits, ms=(time.perf_counter() - started) * 1000,
                             total=max(len(ranked) - (len(window) - len(hits)), offset + len(hits)),
                             kinds={meme_id: kind for meme_id, _, kind in window})


def _read_query(core, data: bytes, name: str) -> _Query:
    settings = core.settings
    if len(data) > settings.max_upload_mb * 1e6:
        raise InvalidInputError(f"{name} is {len(data) / 1e6:.1f} MB, over the {settings.max_upload_mb:g} MB limit",
                                hint="search with a smaller screenshot of the meme")
    _, image = probe_bytes(data, settings.max_megapixels, name)
    sha256 = hashlib.sha256(data).hexdigest()
    caption, boxes = _read_caption(core, image, sha256)
    return _Query(image=image, sha256=sha256, phash=dhash(image), caption=caption, boxes=boxes)


def _read_caption(core, image: Image.Image, sha256: str) -> tuple[str | None, list]:
    """The query's caption and its boxes, read by the same OCR as the library (none when OCR is off).
    A file already in the library is not read again: its stored OCR is the same reading."""
    known = [row["id"] for row in core.store.memes_with_sha(sha256) if row["status"] == "ok"]
    if known:
        meme = core.store.get_meme(known[0])
        boxes = TemplateStore(core.store).ocr_boxes(meme.id)
        if meme.ocr_text or boxes:  # read already (a meme OCR found nothing on is simply read again)
            return meme.ocr_text, boxes
    if core.ocr is None:
        return None, []
    try:
        result = core.ocr.read(image)
    except ModelUnavailableError:
        return None, []
    except Exception as exc:  # noqa: BLE001 - a picture OCR chokes on is still searched by its picture
        log.warning("OCR of the query image failed: %s", exc)
        return None, []
    return result.text, list(result.boxes)


def rank_matches(core, query: _Query) -> list[tuple[int, float, str]]:
    """(meme id, score, kind) of every match, best first."""
    store = core.store
    templates = TemplateStore(store)
    found: dict[int, tuple[str, float]] = {}  # id -> (kind, strength in [0, 1]); first claim wins

    def claim(meme_id: int, kind: str, strength: float) -> None:
        if meme_id not in found:
            found[meme_id] = (kind, strength)

    for row in store.memes_with_sha(query.sha256):
        if row["status"] == "ok":
            claim(int(row["id"]), "exact", 1.0)
    close = close_hashes(store, query.phash, DUPLICATE_BITS)
    verified, colour_ranked = _verified_pictures(templates, query)
    captions = {meme.id: meme.ocr_text for meme in store.get_memes([*close, *(i for i, _ in verified)])}
    # A hash only sees an 8×9 grid: one caption line changes a few bits at most, and every
    # plain gradient of one direction hashes alike. So with OCR, a close hash is the same meme
    # only when the caption reads the same and the whole images verify (``_looks_same``);
    # without OCR the hash alone decides.
    hash_alike = [meme_id for meme_id, _ in sorted(close.items(), key=lambda item: item[1])
                  if query.caption is None or _same_caption(query.caption, captions.get(meme_id, ""))]
    if query.caption is None:
        for meme_id in hash_alike:
            claim(meme_id, "duplicate", 1.0 - close[meme_id] / 64)
    for meme_id, inliers in verified:
        strength = min(inliers, 200) / 200
        if query.caption is not None and _same_caption(query.caption, captions.get(meme_id, "")):
            claim(meme_id, "duplicate", 0.5 * strength)  # below a hash match: a crop is less certain
        else:
            claim(meme_id, "template", 0.5 + 0.5 * strength)
    if query.caption is not None:
        look_at = [meme_id for meme_id in hash_alike if meme_id not in found][:CAPTION_CANDIDATES]
        if not any(kind in ("exact", "duplicate") for kind, _ in found.values()):
            look_at += [i for i in _caption_candidates(core, query) if i not in found and i not in look_at]
        for meme_id, inliers in _looks_same(core, query, look_at):
            strength = 1.0 - close[meme_id] / 64 if meme_id in close else 0.5 * min(inliers, 200) / 200
            claim(meme_id, "duplicate", strength)
    # Every member of a matched meme's template group shares its picture.
    strong = [meme_id for meme_id, (kind, _) in found.items()]
    for members in templates.siblings(strong).values():
        for member in members:
            claim(member, "template", 0.0)
    _add_similar(core, query, found, colour_ranked)
    ordered = sorted(found.items(), key=lambda item: (KINDS.index(item[1][0]), -item[1][1], item[0]))
    return [(meme_id, _score(kind, strength), kind) for meme_id, (kind, strength) in ordered]


def _verified_pictures(templates: TemplateStore, query: _Query) -> tuple[list[tuple[int, int]], list[int]]:
    """(meme id, inliers) of the memes whose picture verifiably is the query's, most inliers first;
    and the colour-layout candidates in order (for fusing with CLIP)."""
    from memesearch.templates.features import extract, single_threaded_opencv
    from memesearch.templates.matching import verify

    index = _colour_index(templates)
    if not len(index):
        return [], []
    with single_threaded_opencv():
        features = extract(query.image, query.boxes)
        candidates = index.nearest(features.vector, CANDIDATES)
        stored = templates.features_of(candidates)
        verdicts = [(meme_id, verify(features, stored[meme_id])) for meme_id in candidates if meme_id in stored]
    verified = [(meme_id, verdict.inliers) for meme_id, verdict in verdicts if verdict.same]
    return sorted(verified, key=lambda item: (-item[1], item[0])), candidates


def _caption_candidates(core, query: _Query) -> list[int]:
    """Memes whose caption reads like the query's, found by keyword search on it."""
    if len(spaceless(query.caption or "")) < MIN_CAPTION_CHARS:
        return []
    words = _WORDS.findall(query.caption)[:MAX_CAPTION_WORDS]
    ids = core.store.keyword_search(words, [], CAPTION_CANDIDATES * 4)
    return [m.id for m in core.store.get_memes(ids) if _same_caption(query.caption, m.ocr_text)][:CAPTION_CANDIDATES]


def _looks_same(core, query: _Query, meme_ids: list[int]) -> list[tuple[int, int]]:
    """(meme id, inliers) of those memes whose whole image, caption included, verifiably is the
    query's and keeps its colour layout: a copy, crop or screenshot of a meme that is mostly
    words on a plain background, where the masked picture has too little to match. Each
    candidate is read from disk; a caption that merely repeats on another picture fails."""
    from memesearch.library.decode import load_rgb
    from memesearch.templates.features import extract, single_threaded_opencv
    from memesearch.templates.matching import verify

    if not meme_ids:
        return []
    found = []
    with single_threaded_opencv():
        mine = extract(query.image)
        for meme in core.store.get_memes(meme_ids):
            try:
                theirs = extract(load_rgb(Path(meme.path), core.settings.max_megapixels))
            except Exception as exc:  # noqa: BLE001 - a file gone or damaged since indexing is just not a match
                log.debug("cannot compare with %s: %s", meme.path, exc)
                continue
            verdict = verify(mine, theirs)
            if verdict.same and float(mine.vector @ theirs.vector) >= SAME_LOOK:
                found.append((meme.id, verdict.inliers))
    return found


_colour_indexes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # store -> (signature, index)
_colour_lock = threading.Lock()


def _colour_index(templates: TemplateStore):
    """The colour layouts of the library, kept between searches (at 100k memes reading them takes
    about a second) and reloaded when a meme gains or loses its features. A meme whose features
    were recomputed keeps its old layout here until then: it only picks candidates, and each
    candidate is verified with its stored features."""
    from memesearch.templates.grouping import VectorIndex

    signature = templates.vectors_signature()
    with _colour_lock:
        cached = _colour_indexes.get(templates.store)
        if cached is None or cached[0] != signature:
            ids, matrix = templates.vectors()
            cached = _colour_indexes[templates.store] = (signature, VectorIndex.from_matrix(ids, matrix))
    return cached[1]


def _add_similar(core, query: _Query, found: dict, colour_ranked: list[int]) -> None:
    """CLIP neighbours above the floor, when an image model is installed, ranked by RRF with the colour layout."""
    from memesearch.search.image_neighbours import image_neighbours

    neighbours = image_neighbours(core, query.image, CLIP_DEPTH)
    if not neighbours:
        return
    floor = core.visual.image_floor  # per model spec (models.yml `image_floor`; see visual/model.py)
    alike = [meme_id for meme_id, cosine in neighbours if cosine >= floor and meme_id not in found]
    if not alike:
        return
    allowed = set(alike)
    fused = rrf_fuse([alike, [meme_id for meme_id in colour_ranked if meme_id in allowed]])
    best = fused[0][1]
    for meme_id, score in fused:
        found[meme_id] = ("similar", score / best)


def _same_caption(a: str, b: str) -> bool:
    """Two captions that read alike, spaces and punctuation aside (OCR of a smaller copy runs
    words together, a crop loses a few letters). Two blank pictures count as the same caption."""
    a, b = spaceless(a)[:MAX_CAPTION_CHARS], spaceless(b)[:MAX_CAPTION_CHARS]
    if not a and not b:
        return True
    return SequenceMatcher(None, a, b, autojunk=False).ratio() >= SAME_CAPTION


def _score(kind: str, strength: float) -> float:
    low, high = _BANDS[kind]
    return low + (high - low) * max(0.0, min(1.0, strength))
