"""rapidocr's onnxruntime sessions with memesearch's spin mode (MEMESEARCH_SPIN).

rapidocr opens its detector and recogniser sessions with options of its own, where idle
threads keep spinning after a run. Read in one process with 2 threads, the detector's threads
then spin through the recogniser's run and the other way round: `memesearch index` with
MEMESEARCH_OCR_WORKERS=1 read 6.68 memes/s so, 9.32 with spinning stopped at the end of each
run (bench/bench_index.py, 120 memes, int8 graphs, 2 cores; docs/BENCHMARKS.md). The OCR worker
processes of a default `memesearch index` run one thread each and have no idle threads to
spin; reads in the app's own process (uploads, the ML service, one OCR process) gain.

rapidocr builds the options in one static method, ``OrtInferSession._init_sess_opts``; it is
wrapped once so that our entries are added to what it returns. A rapidocr without that
method keeps its own options: OCR still reads, only slower.
"""

from __future__ import annotations

import functools
import logging
import threading

from memesearch.ml.onnx_runtime.session import apply_spin_mode

log = logging.getLogger(__name__)
_lock = threading.Lock()
_MARK = "_memesearch_spin_mode"


def use_our_spin_mode() -> bool:
    """Wrap rapidocr's session options (once per process); False where its layout is not the one known."""
    with _lock:
        try:
            from rapidocr.inference_engine.onnxruntime.main import OrtInferSession
        except ImportError as exc:
            log.debug("rapidocr's onnxruntime engine not found (%s): its sessions keep their own spinning", exc)
            return False
        current = OrtInferSession.__dict__.get("_init_sess_opts")
        if not isinstance(current, staticmethod):
            log.debug("rapidocr has no OrtInferSession._init_sess_opts: its sessions keep their own spinning")
            return False
        if getattr(current.__func__, _MARK, False):
            return True
        rapidocr_options = current.__func__

        @functools.wraps(rapidocr_options)  # keeps rapidocr's own as __wrapped__
        def init_sess_opts(cfg):
            options = rapidocr_options(cfg)
            apply_spin_mode(options)
            return options

        setattr(init_sess_opts, _MARK, True)
        OrtInferSession._init_sess_opts = staticmethod(init_sess_opts)
        return True
