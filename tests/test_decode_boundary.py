"""The per-file boundary: whatever one file makes the decoder or the OCR engine raise is that file's
recorded error; the run goes on, and the file is not read again until it changes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from memesearch.config import Settings
from memesearch.errors import ImageError
from memesearch.library import decode
from memesearch.library.decode import probe, probe_bytes
from memesearch.library.scanner import scan_folder
from memesearch.ml.fake import FakeEmbedder
from memesearch.ml.ocr import RapidOcrEngine
from memesearch.pipeline import Pipeline
from memesearch.store.sqlite import SqliteStore
from tests.hostile.corpus import hostile_cases

BROKEN = {case.name: case.data for case in hostile_cases() if case.name.startswith("broken/")}


@pytest.fixture(scope="module")
def ocr():
    return RapidOcrEngine(threads=1)


@pytest.fixture
def library(tmp_path):
    from memesearch.library.samples import render_sample_memes

    folder, home = tmp_path / "memes", tmp_path / "data"
    samples = render_sample_memes(folder, count=3, seed=5)
    settings = Settings(home=home)
    store = SqliteStore(home / "store.db")
    store.add_folder(str(folder))
    yield store, settings, folder, samples
    store.close()


def _scan(store, settings):
    return scan_folder(store, store.list_folders()[0], settings)


def _damage_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    """Replace a file's bytes but keep the stat the scanner compares (a damaged sector, a bad sync)."""
    info = path.stat()
    path.write_bytes(data[: info.st_size].ljust(info.st_size, b"\0"))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_a_file_damaged_after_the_scan_is_recorded_by_the_ocr_stage_and_not_read_again(library, ocr):
    store, settings, folder, samples = library
    _scan(store, settings)
    victim = samples[0].path
    _damage_keeping_size_and_mtime(victim, BROKEN["broken/ztxt-2mb.png"])
    pipeline = Pipeline(store, settings, ocr=ocr, embedder=FakeEmbedder())
    report = pipeline.run_ocr()
    assert report.done == len(samples) - 1, "the other memes are read"
    errors = dict(store.errors())
    assert list(errors) == [str(victim)] and "metadata chunk" in errors[str(victim)] and "\n" not in errors[str(victim)]
    # The next run: the scanner sees the same size and mtime and does not reopen it; OCR does not retry it.
    again = _scan(store, settings)
    assert again.unchanged == len(samples) and again.changed == 0
    assert pipeline.run_ocr().failed == [] and dict(store.errors()) == errors
    # Once the file changes, it is read again (here: repaired) and indexed.
    Image.new("RGB", (120, 80), (250, 250, 250)).save(victim, format="PNG")
    assert _scan(store, settings).changed == 1
    assert pipeline.run_ocr().done == 1 and store.errors() == []


def test_an_ocr_engine_failure_on_one_image_is_recorded_and_the_stage_goes_on(library, ocr):
    store, settings, folder, samples = library
    _scan(store, settings)

    class ChokesOnTheFirst:
        """The real engine, except that it raises (as a buggy model might) on one image."""

        engine_id = ocr.engine_id
        calls = 0

        def read(self, image):
            self.calls += 1
            if self.calls == 1:
                raise IndexError("list index out of range")
            return ocr.read(image)

    report = Pipeline(store, settings, ocr=ChokesOnTheFirst(), embedder=FakeEmbedder()).run_ocr()
    assert report.done == len(samples) - 1
    assert len(report.failed) == 1 and report.failed[0][1] == "OCR failed: IndexError: list index out of range"
    assert store.stage_counts("ocr").get("failed") == 1


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_damaged_case_is_an_image_error_or_decodes(tmp_path, name):
    path = tmp_path / Path(name).name
    path.write_bytes(BROKEN[name])
    for attempt in (lambda: probe(path, 64), lambda: probe_bytes(BROKEN[name], 64)):
        try:
            info, rgb = attempt()
        except ImageError as exc:
            assert len(exc.message) > 10 and "\n" not in exc.message
        else:
            assert rgb.mode == "RGB" and rgb.size == (info.width, info.height)


def test_memory_error_in_the_decoder_is_the_file_s_error(tmp_path, monkeypatch):
    path = tmp_path / "fine.png"
    Image.new("RGB", (8, 8)).save(path)

    def refuse(self, *args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    with pytest.raises(ImageError, match="more memory"):
        probe(path, 64)


def test_interrupts_and_file_system_errors_are_not_swallowed(tmp_path, monkeypatch):
    path = tmp_path / "fine.png"
    Image.new("RGB", (8, 8)).save(path)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ImageFile.ImageFile, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        probe(path, 64)

    def disk_failed(self, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(ImageFile.ImageFile, "load", disk_failed)
    with pytest.raises(OSError) as caught:
        probe(path, 64)
    assert not isinstance(caught.value, ImageError) and caught.value.errno == errno.EIO
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "gone.png", 64)


def test_pillow_limits_are_the_deliberate_ones():
    from PIL import PngImagePlugin

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert PngImagePlugin.MAX_TEXT_CHUNK == 1 << 20 and PngImagePlugin.MAX_TEXT_MEMORY == 64 << 20
    assert decode.SUPPORTED_FORMATS == {"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"}


def test_an_errno_caused_by_the_content_is_the_file_s_error():
    """Found by bench/fuzz_images.py: a damaged TIFF makes Pillow seek to an invalid offset, and the
    kernel answers EINVAL. An errno alone does not make an error the file system's."""
    finding = Path(__file__).parent / "fuzz" / "findings" / "tiff-seek-einval.png"
    with pytest.raises(ImageError, match="Invalid argument"):
        probe(finding, 64)
