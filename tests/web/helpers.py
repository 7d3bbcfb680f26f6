"""Small helpers shared by the web tests."""

from __future__ import annotations

import io
import time

from PIL import Image, ImageDraw

TERMINAL = {"done", "cancelled", "failed"}


def wait_for_run(client, run_id: int, deadline_s: float = 120.0) -> dict:
    """Poll a run until it finishes (the deadline only bounds a hung test; it asserts nothing about speed)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        run = client.get(f"/api/jobs/{run_id}").json()
        if run["state"] in TERMINAL:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def image_bytes(text: str, fmt: str = "PNG", size=(360, 240), colour=(250, 250, 250)) -> bytes:
    """A small image with words on it, encoded as ``fmt``."""
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), text, fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()
