"""Reading moondream's ``.mf`` bundles (the container of the moondream 0.0.x client).

Layout, as read by ``moondream/moonfile.py`` of the PyPI package moondream 0.0.3-0.0.6
(also https://github.com/vikhyat/moondream/blob/main/clients/python/moondream/moonfile.py):

    b"MOON"                      4 bytes magic
    version                      1 byte, must be 1
    repeated until end of file:
        name length              uint32, big endian
        name                     UTF-8 (e.g. "vision_encoder.onnx", may carry a folder)
        content length           uint64, big endian
        content                  raw bytes

The published files are gzipped (``moondream-0_5b-int8.mf.gz``); the client gunzips
when the name ends in ``.gz``. We look at the gzip magic instead, so a renamed file
still reads. A component is keyed by its file name without folder and extension, like
the client does: ``vision_encoder``, ``vision_projection``, ``text_encoder``,
``text_decoder``, ``tokenizer`` (JSON), ``initial_kv_cache`` (``.npy``), ``config``
(JSON with ``special_tokens`` and ``templates``) and, in the real bundles, the region
heads ``coord_encoder``/``coord_decoder``/``size_encoder``/``size_decoder`` (unused
for captions, so optional here).
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from memesearch.errors import ModelUnavailableError

MAGIC = b"MOON"
FORMAT_VERSION = 1
GZIP_MAGIC = b"\x1f\x8b"
#: ONNX graphs a caption needs; the region heads are only needed for detect/point.
CAPTION_GRAPHS = ("vision_encoder", "vision_projection", "text_encoder", "text_decoder")
REGION_GRAPHS = ("coord_encoder", "coord_decoder", "size_encoder", "size_decoder")
_MAX_NAME_BYTES = 4096
_REPAIR_HINT = "the bundle is truncated or corrupt; download it again (`memesearch models pull`)"


@dataclass
class MoondreamBundle:
    """The parsed parts of one ``.mf`` file; ONNX graphs stay serialized bytes."""

    path: Path
    graphs: dict[str, bytes]
    tokenizer_json: str
    initial_kv_cache: np.ndarray
    config: dict
    #: Entries we do not interpret (kept so callers can see what a bundle held).
    other: dict[str, bytes] = field(default_factory=dict)

    @property
    def eos_id(self) -> int:
        return int(self.config["special_tokens"]["eos"])

    @property
    def templates(self) -> dict:
        return self.config["templates"]


def _corrupt(path: Path, what: str) -> ModelUnavailableError:
    return ModelUnavailableError(f"moondream bundle {path}: {what}", hint=_REPAIR_HINT)


def _read_exact(stream: BinaryIO, size: int, path: Path, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise _corrupt(path, f"file ends inside {what} ({len(data)} of {size} bytes present)")
    return data


def _iter_entries(stream: BinaryIO, path: Path):
    magic = stream.read(len(MAGIC))
    if magic != MAGIC:
        raise _corrupt(path, f"not a moondream .mf file (magic {magic!r}, expected {MAGIC!r})")
    version = _read_exact(stream, 1, path, "the header")[0]
    if version != FORMAT_VERSION:
        raise ModelUnavailableError(
            f"moondream bundle {path} has format version {version}; only version {FORMAT_VERSION} is supported",
            hint="use a bundle published for the moondream 0.0.x client (e.g. moondream-0_5b-int8.mf.gz)",
        )
    while True:
        length_bytes = stream.read(4)
        if not length_bytes:
            return
        if len(length_bytes) != 4:
            raise _corrupt(path, "file ends inside an entry header")
        (name_length,) = struct.unpack(">I", length_bytes)
        if not 0 < name_length <= _MAX_NAME_BYTES:
            raise _corrupt(path, f"implausible entry name length {name_length}")
        raw_name = _read_exact(stream, name_length, path, "an entry name")
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _corrupt(path, f"entry name is not UTF-8: {raw_name[:40]!r}") from exc
        (size,) = struct.unpack(">Q", _read_exact(stream, 8, path, f"the header of entry {name!r}"))
        yield name, _read_exact(stream, size, path, f"entry {name!r}")


def read_entries(path: Path | str) -> dict[str, bytes]:
    """All entries of a ``.mf`` (or gzipped ``.mf``) file by their stored names."""
    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(f"moondream bundle not found: {path}")
    with path.open("rb") as probe:
        gzipped = probe.read(2) == GZIP_MAGIC
    entries: dict[str, bytes] = {}
    try:
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as stream:
            for name, content in _iter_entries(stream, path):
                if name in entries:
                    raise _corrupt(path, f"entry {name!r} appears twice")
                entries[name] = content
    except (EOFError, OSError, zlib.error) as exc:  # gzip: truncated stream or bad CRC
        raise _corrupt(path, f"cannot decompress ({exc})") from exc
    return entries


def component_key(name: str) -> str:
    """``"weights/vision_encoder.onnx"`` -> ``"vision_encoder"`` (the client's keying)."""
    return name.rsplit("/", 1)[-1].split(".", 1)[0]


def _parse_npy(path: Path, data: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise _corrupt(path, f"initial_kv_cache.npy is unreadable ({exc})") from exc


def _parse_config(path: Path, data: bytes) -> dict:
    try:
        config = json.loads(data)
        int(config["special_tokens"]["eos"])
        if not isinstance(config["templates"], dict):
            raise TypeError("templates is not an object")
    except Exception as exc:
        raise _corrupt(path, f"config.json lacks special_tokens.eos/templates or is not JSON ({exc})") from exc
    return config


def read_bundle(path: Path | str) -> MoondreamBundle:
    """Read and check a bundle; every problem becomes a ModelUnavailableError saying what."""
    path = Path(path)
    entries = read_entries(path)
    by_key: dict[str, tuple[str, bytes]] = {component_key(name): (name, data) for name, data in entries.items()}
    missing = [key for key in (*CAPTION_GRAPHS, "tokenizer", "initial_kv_cache", "config") if key not in by_key]
    if missing:
        raise _corrupt(path, f"missing entries {missing}; present: {sorted(by_key)}")
    graphs = {key: by_key[key][1] for key in (*CAPTION_GRAPHS, *REGION_GRAPHS) if key in by_key}
    try:
        tokenizer_json = by_key["tokenizer"][1].decode("utf-8")
        json.loads(tokenizer_json)
    except Exception as exc:
        raise _corrupt(path, f"tokenizer.json is not valid JSON ({exc})") from exc
    kv_cache = _parse_npy(path, by_key["initial_kv_cache"][1])
    if kv_cache.ndim != 6:
        raise _corrupt(path, f"initial_kv_cache has shape {kv_cache.shape}; expected 6 dimensions "
                             "(layers, 2, batch, heads, positions, head_dim)")
    used = {*graphs, "tokenizer", "initial_kv_cache", "config"}
    return MoondreamBundle(
        path=path,
        graphs=graphs,
        tokenizer_json=tokenizer_json,
        initial_kv_cache=kv_cache,
        config=_parse_config(path, by_key["config"][1]),
        other={name: data for key, (name, data) in by_key.items() if key not in used},
    )
