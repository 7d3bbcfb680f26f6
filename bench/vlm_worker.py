"""One backend of the VLM speed benchmark, in its own process (so peak RSS is its own).

Run by bench/bench_vlm.py as ``python bench/vlm_worker.py JSON``; prints one JSON line.
Each captioner's model calls are wrapped with timers so a meme's end-to-end time splits into:

- vision:  the vision encoder (+ projector / connector), summed;
- prefill: from the end of the vision encoder to the first logits (prompt embedding, Florence's
           text encoder, the first decoder pass over the whole prompt);
- decode:  the remaining decoder passes, exactly ``tokens`` of them (EOS is ignored);
           for Moondream the decoder pass over the image tokens is prefill, not a token;
- other:   the rest (image preprocessing, tokenisation, processor calls).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent


def meme_image(width: int = 640, height: int = 480) -> Image.Image:
    """A deterministic photo-like meme: noisy gradient, shapes, impact-style top/bottom text."""
    import numpy as np

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width * 200, y / height * 160 + 40, (x + y) / (width + height) * 255], axis=-1)
    pixels = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((220, 140, 420, 340), fill=(240, 200, 120), outline=(60, 40, 20), width=6)
    draw.rectangle((60, 300, 180, 420), fill=(90, 120, 200))
    font = ImageFont.load_default(size=44)
    for text, top in (("WHEN THE BUILD PASSES", 16), ("ON THE FIRST TRY", height - 70)):
        draw.text((width // 2, top), text, font=font, fill="white", anchor="ma", stroke_width=3, stroke_fill="black")
    return image


class Clock:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.vision = 0.0
        self.vision_end = None
        self.first_logits = None
        self.lm_calls = 0

    def vision_done(self, seconds: float) -> None:
        self.vision += seconds
        self.vision_end = time.perf_counter()

    def lm_done(self) -> None:
        self.lm_calls += 1
        if self.first_logits is None:
            self.first_logits = time.perf_counter()


class TimedSession:
    """Forwards everything to an onnxruntime session, timing ``run``."""

    def __init__(self, session, on_done) -> None:
        self._session, self._on_done = session, on_done

    def run(self, *args, **kwargs):
        started = time.perf_counter()
        result = self._session.run(*args, **kwargs)
        self._on_done(time.perf_counter() - started)
        return result

    def run_with_iobinding(self, *args, **kwargs):  # SmolVLM's GroupQueryAttention loop binds its KV buffers
        started = time.perf_counter()
        result = self._session.run_with_iobinding(*args, **kwargs)
        self._on_done(time.perf_counter() - started)
        return result

    def __getattr__(self, name):
        return getattr(self._session, name)


def moondream_onnx(models: Path, spec: dict, clock: Clock):
    from memesearch.ml.families.moondream.onnx_backend import OnnxMoondreamCaptioner

    captioner = OnnxMoondreamCaptioner(models, dtype=spec["dtype"], threads=spec["threads"])
    captioner.ensure_loaded()
    captioner.eos_id = -1  # always decode `tokens` tokens
    captioner.vision_encoder = TimedSession(captioner.vision_encoder, clock.vision_done)
    captioner.vision_projection = TimedSession(captioner.vision_projection, clock.vision_done)
    decoder = captioner.text_decoder

    class TokenPasses:  # the pass over the image asks for no logits: it is prefill, not a token
        def run(self, output_names, feeds):
            result = decoder.run(output_names, feeds)
            if "logits" in output_names:
                clock.lm_done()
            return result

        def __getattr__(self, name):
            return getattr(decoder, name)

    captioner.text_decoder = TokenPasses()
    return lambda request: [captioner.generate(request.image, request.prompt, request.max_new_tokens)]


def onnx_captioner(spec: dict, clock: Clock):
    models = (Path(spec["models_dir"]) / spec["model"] / "onnx").resolve()
    if spec["family"] == "moondream":
        return moondream_onnx(models, spec, clock)
    if spec["family"] == "smolvlm":
        from memesearch.ml.families.smolvlm.onnx_backend import OnnxSmolVLMCaptioner

        captioner = OnnxSmolVLMCaptioner(models, dtype=spec["dtype"], threads=spec["threads"],
                                         image_longest_edge=spec.get("longest_edge"))
        captioner.ensure_loaded()
        captioner.config = replace(captioner.config, eos_token_ids=())  # always decode `tokens` tokens
        captioner.vision = TimedSession(captioner.vision, clock.vision_done)
        captioner.decoder = TimedSession(captioner.decoder, lambda _s: clock.lm_done())
        run = lambda request: captioner.generate_ids([request])  # noqa: E731
    else:
        from memesearch.ml.families.florence2.onnx_backend import OnnxFlorence2Captioner

        captioner = OnnxFlorence2Captioner(models, dtype=spec["dtype"], threads=spec["threads"])
        captioner.ensure_loaded()
        captioner._decode_settings = replace(captioner._decode_settings, eos_token_id=-1)
        captioner._vision = TimedSession(captioner._vision, clock.vision_done)
        captioner._decoder.session = TimedSession(captioner._decoder.session, lambda _s: clock.lm_done())
        run = lambda request: captioner.generate_ids([request], request.max_new_tokens)  # noqa: E731
    return run


def time_vision(modules, clock: Clock) -> None:
    starts = {}
    for module in modules:
        module.register_forward_pre_hook(lambda m, _a: starts.__setitem__(id(m), time.perf_counter()))
        module.register_forward_hook(lambda m, _a, _o: clock.vision_done(time.perf_counter() - starts[id(m)]))


def moondream_torch(checkpoint: Path, clock: Clock):
    """Our torch Moondream modules with moondream2's shapes, run directly (no hub remote code)."""
    from memesearch.ml.families.moondream.tiny import Reference

    reference = Reference(checkpoint)
    time_vision([reference.modules["vision_encoder"], reference.modules["vision_projection"]], clock)
    step = reference.step

    def token_pass(*args):
        result = step(*args)
        clock.lm_done()
        return result

    reference.step = token_pass
    return lambda request: [reference.generate(request.image, request.prompt, request.max_new_tokens, stop_at_eos=False)]


def meme_search_florence(checkpoint: Path, spec: dict, clock: Clock):
    """Florence-2 as meme-search runs it today: transformers fp32, beam search with 3 beams,
    and the model and processor loaded again for every image (their load time is in "other")."""
    import torch
    import transformers

    def run(request):
        model = transformers.Florence2ForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
        processor = transformers.AutoProcessor.from_pretrained(checkpoint)
        model.generation_config.min_new_tokens = request.max_new_tokens  # EOS never wins: fixed length
        time_vision([model.model.vision_tower, model.model.multi_modal_projector], clock)
        model.register_forward_hook(lambda _m, _a, _o: clock.lm_done())
        inputs = processor(text=[request.prompt], images=[request.image.convert("RGB")], return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**inputs, do_sample=False, num_beams=3, max_new_tokens=request.max_new_tokens)
        return [output[0].tolist()]

    return run


def torch_captioner(spec: dict, clock: Clock):
    import torch

    torch.set_num_threads(spec["threads"])
    checkpoint = Path(spec["models_dir"]) / spec["model"] / "checkpoint"
    if spec["family"] == "moondream":
        return moondream_torch(checkpoint, clock)
    if spec["backend"] == "meme-search":
        return meme_search_florence(checkpoint, spec, clock)
    if spec["family"] == "smolvlm":
        from memesearch.ml.families.smolvlm.torch_backend import TorchSmolVLMCaptioner

        captioner = TorchSmolVLMCaptioner(checkpoint, threads=spec["threads"],
                                          image_longest_edge=spec.get("longest_edge"))
        captioner.ensure_loaded()
        model = captioner.model
        vision_modules = [model.model.vision_model, model.model.connector]
        run = lambda request: captioner.generate_ids([request])  # noqa: E731
    else:
        from memesearch.ml.families.florence2.torch_backend import TorchFlorence2Captioner

        captioner = TorchFlorence2Captioner(checkpoint, threads=spec["threads"])
        captioner.ensure_loaded()
        model = captioner._model
        vision_modules = [model.model.vision_tower, model.model.multi_modal_projector]
        run = lambda request: captioner.generate_ids([request], request.max_new_tokens)  # noqa: E731
    # EOS can never win, so generate() always runs max_new_tokens decoder passes.
    model.generation_config.min_new_tokens = spec["tokens"] + 1
    time_vision(vision_modules, clock)
    model.register_forward_hook(lambda _m, _a, _o: clock.lm_done())
    return run


def current_rss_mb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024)
    return -1


def main(spec: dict) -> dict:
    from memesearch.ml.base import CaptionRequest

    clock = Clock()
    load_started = time.perf_counter()
    factory = onnx_captioner if spec["backend"] == "onnx" else torch_captioner
    run = factory(spec, clock)
    load_s = time.perf_counter() - load_started
    width, height = spec["image_size"]
    # One prefill pass gives the first token, then exactly `tokens` decode passes.
    request = CaptionRequest(image=meme_image(width, height), prompt=spec["prompt"], max_new_tokens=spec["tokens"] + 1)
    samples = []
    for index in range(spec["warmup"] + spec["runs"]):
        clock.reset()
        started = time.perf_counter()
        ids = run(request)
        ended = time.perf_counter()
        if clock.lm_calls != spec["tokens"] + 1:
            raise RuntimeError(f"expected {spec['tokens'] + 1} decoder passes, got {clock.lm_calls}")
        if index < spec["warmup"]:
            continue
        total = ended - started
        prefill = clock.first_logits - clock.vision_end
        decode = ended - clock.first_logits
        samples.append({"vision": clock.vision, "prefill": prefill, "decode": decode, "e2e": total,
                        "other": total - clock.vision - prefill - decode})
    result = {key: statistics.median(s[key] for s in samples) * 1000 for key in samples[0]}
    result = {f"{key}_ms": round(value, 1) for key, value in result.items()}
    result["tokens_per_s"] = round(spec["tokens"] / (result["decode_ms"] / 1000), 2)
    result["e2e_all_ms"] = [round(s["e2e"] * 1000) for s in samples]
    result["load_s"] = round(load_s, 2)
    result["generated_ids"] = len(ids[0])  # Florence drops its forced BOS/EOS from the ids
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["rss_end_mb"] = current_rss_mb()  # the peak can come from loading, this is after the runs
    result["load1"] = os.getloadavg()[0]
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    print("RESULT " + json.dumps(main(json.loads(sys.argv[1]))), flush=True)
