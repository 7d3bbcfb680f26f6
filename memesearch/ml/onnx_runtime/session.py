"""Creating onnxruntime sessions the same way everywhere."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from memesearch.errors import ModelUnavailableError

_shared_arena_lock = threading.Lock()
_shared_arena_registered = False


def onnxruntime():
    """``import onnxruntime`` with its telemetry events turned off; call it before opening a session.

    ORT only sends telemetry from Windows builds, but the switch exists everywhere and a
    self-hosted app must not phone home on any platform. Cheap (a flag), so done on every call."""
    import onnxruntime as ort

    disable = getattr(ort, "disable_telemetry_events", None)  # absent from some builds: nothing to turn off
    if disable is not None:
        disable()
    return ort


def default_threads() -> int:
    """Intra-op threads: MEMESEARCH_THREADS, else all cores (ORT's own default)."""
    value = os.environ.get("MEMESEARCH_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else 0


#: MEMESEARCH_SPIN's words and the spin mode each means.
SPIN_WORDS = {
    **dict.fromkeys(("run", "1", "true", "yes", "on"), "run"),
    **dict.fromkeys(("never", "0", "false", "no", "off"), "never"),
    "always": "always",
}


def parse_spin_mode(value: object) -> str:
    """``run``, ``never`` or ``always`` for one of SPIN_WORDS (any case); ValueError otherwise."""
    word = str(value).strip().lower()
    if word not in SPIN_WORDS:
        raise ValueError(f"spin must be one of run, never, always (or true/false), not {value!r}")
    return SPIN_WORDS[word]


def spin_mode() -> str:
    """How idle intra-op threads wait for work, from MEMESEARCH_SPIN:

    * ``run`` (the default; also 1/true/yes/on): they spin while a run lasts and stop when it ends
      (ORT's ``session.force_spinning_stop``);
    * ``never`` (0/false/no/off): they sleep;
    * ``always``: ORT's own default, they keep spinning for a while after a run too.

    Spinning saves a wake-up per operator on quiet cores, so it stays on inside a run. After a
    run it only takes cores from whatever runs next, which in this app is usually another
    session: SmolVLM's vision encoder spun on through the decoder's prompt run and the decoder
    through the next meme's vision encoder, so stopping at the end of a run captions 1.09-1.11x
    as many memes a minute one at a time; rapidocr's detector and recogniser did the same to each
    other, and in-process OCR reads 1.40x as many; MiniLM's threads spun through CLIP's text
    tower in a search, 27.9 vs 17.3 ms a query (bench/bench_describe_levers.py, bench_index.py,
    bench_query_models.py; docs/BENCHMARKS.md, issue 16 session 16).

    On cores shared with other work, spinning costs even inside a run: CLIP's int8 image tower
    on 2 busy cores (load 6-8) took 33-38 ms per image without spinning, 63-150 ms with it
    (bench/bench_clip_levers.py)."""
    try:
        return parse_spin_mode(os.environ.get("MEMESEARCH_SPIN", "run"))
    except ValueError:  # Settings reports a bad value when the app starts; a model still loads
        return "run"


def session_options(ort, threads: int | None = None):
    """SessionOptions as every memesearch session wants them: ``threads`` intra-op threads
    (None: MEMESEARCH_THREADS, else all cores), one inter-op thread, all graph optimisations,
    quiet logs, and the spinning of ``spin_mode()``. ``ort``: the module ``onnxruntime()`` gave."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = default_threads() if threads is None else threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # ORT warnings about unused initialisers are noise for users
    apply_spin_mode(options)
    return options


def apply_spin_mode(options) -> None:
    """Set ``spin_mode()``'s entries on SessionOptions (also those rapidocr makes: ml/rapidocr_sessions.py)."""
    mode = spin_mode()
    if mode == "never":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    elif mode == "run":
        options.add_session_config_entry("session.force_spinning_stop", "1")


def _use_shared_arena(ort, options) -> None:
    """Allocate this session's tensors from one process-wide CPU arena.

    Each session otherwise grows a private arena to its own peak and keeps it, so a model made
    of several graphs run one after the other (vision encoder, then decoder) holds the sum of
    their peaks. One shared arena, extended by what is requested rather than the next power
    of two, holds roughly the largest one."""
    global _shared_arena_registered
    with _shared_arena_lock:
        if not _shared_arena_registered:
            cpu = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(cpu, ort.OrtArenaCfg({"arena_extend_strategy": 1}))  # kSameAsRequested
            _shared_arena_registered = True
    options.add_session_config_entry("session.use_env_allocators", "1")


def open_session(path: Path | str, *, threads: int | None = None, low_memory: bool = False):
    """Open an ONNX model on the CPU; a missing or corrupt file becomes a clear error.

    ``low_memory`` shares one arena between all such sessions and turns off memory patterns
    (planned per input shape, one block each: a decoder sees a new shape at every step). For
    SmolVLM's 13-tile default it cut peak RSS from ~1.07 GB to ~0.75 GB at the same speed."""
    ort = onnxruntime()

    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(f"ONNX file not found: {path}")
    options = session_options(ort, threads)
    if low_memory:
        options.enable_mem_pattern = False
        _use_shared_arena(ort, options)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ModelUnavailableError(
            f"cannot load ONNX model {path}: {exc}",
            hint="the file may be truncated or corrupt; download it again with `memesearch models pull`",
        ) from exc
