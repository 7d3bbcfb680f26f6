"""A PyTorch reference of the *int8* (and SmolVLM *q4*) ONNX models: emulate ONNX Runtime's quantisation.

Most of our int8 graphs are made by ``ml/onnx_runtime/quantize.quantize_matmuls``: ``quantize_dynamic(
op_types_to_quantize=["MatMul"], weight_type=QInt8, reduce_range=True)`` (per tensor, 7-bit weights).
In the int8 graphs of florence2 and moondream, and in SmolVLM's int8 vision encoder (+ connector),
every ``nn.Linear`` (exported as MatMul + Add, never Gemm, since their inputs are
3-D) became ``DynamicQuantizeLinear -> MatMulInteger -> * (scale_a * scale_w) -> + bias``;
convolutions, embeddings and the attention products between activations stay fp32.
Inside :func:`emulate_ort_int8` every ``torch.nn.functional.linear`` is computed that way
(:func:`int8_linear`):

* weight: symmetric 7-bit, ``scale = max|W| / 64`` (computed in float64 and stored as
  float32, like ``quant_utils.compute_scale_zp``), ``q = round_half_even(W / scale)``;
* activation (ORT's DynamicQuantizeLinear, over the whole input tensor): uint8,
  range ``[min(x, 0), max(x, 0)]``, ``scale = (max - min) / 255``,
  ``zp = round(clamp(-min / scale, 0, 255))``, ``q = clamp(round(x / scale) + zp, 0, 255)``;
* the integer product is exact (float64 holds every partial sum of these sizes), then
  converted to float32, multiplied by ``scale_a * scale_w`` and the bias added.

The per-tensor activation scale depends on the whole tensor a MatMul sees, so the reference
must feed each linear the same tensor as the ONNX graph does (same batch, same positions):
SmolVLM's vision tower runs one tile at a time, as its ONNX captioner does.

CLIP's int8 graphs also turn the patch embedding (a Conv whose kernel equals its stride) into
one more MatMul over the flattened patches (ml/families/clip/patch_matmul.py):
``emulate_ort_int8(patch_convs=True)`` computes such a ``conv2d`` as :func:`int8_linear` over
the same patches. The other families keep that Conv in fp32.

SmolVLM's int8 decoder is one of those by default (``int8_decoder: per_tensor``); its other
decoders (decoder layers and LM head) are ``MatMulNBits`` instead, with weights in
blocks of 32 along K (``quantize.quantize_matmuls_nbits``, onnxruntime's own block quantiser):

* ``int8`` with ``int8_decoder: per_row`` (models.yml; ``quantize_matmuls_8bit_rows``): symmetric
  8-bit weights and accuracy_level 4, where
  MLAS quantises the activations to int8 per row and per block of 32 and multiplies int8 x int8
  per block: :func:`q8_rows_linear` (weights by :func:`q8_dequantize`'s rule, activations by
  :func:`quantize_activation_rows`, both bit for bit; the float sum of the blocks to a few ulps);
* ``q4`` (``quantize_matmuls_4bit``): weight-only 4-bit with fp32 compute (accuracy_level 1): it
  multiplies the fp32 activations by the dequantised weights, so :func:`q4_dequantize` (ORT's
  block rounding, bit for bit) + a plain fp32 linear emulates it.

Both keep the int8 vision encoder above; ``reference_generate(family="smolvlm")`` emulates its
linears with :func:`int8_linear` and the decoder's with the dtype's own linear.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F

INT8_MAX = 127
UINT8_MAX = 255


#: The unpatched ``F.linear``: the emulations below replace it while they run.
_FP32_LINEAR = F.linear

#: ``quantize_dynamic(reduce_range=True)``: QInt8 weights in [-64, 64] (7 bits).
WEIGHT_QMAX = 64


def quantize_weight(weight: torch.Tensor, *, qmax: int = WEIGHT_QMAX) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values as float32, float32 scale) of ORT's symmetric per-tensor weight quantisation."""
    weight = weight.float()
    absmax = weight.abs().max().double()
    if absmax == 0:  # compute_scale_zp: a zero range gets scale 1
        return torch.zeros_like(weight), torch.tensor(1.0)
    scale = (2 * absmax / (2 * qmax)).float()  # dr / dq in float64, stored as float32
    q = torch.round(weight / scale).clamp(-INT8_MAX - 1, INT8_MAX)
    return q, scale


def quantize_activation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(uint8 values as float32, float32 scale, zero point) of ORT's DynamicQuantizeLinear."""
    x = x.float()
    low = torch.clamp(x.min(), max=0.0)
    high = torch.clamp(x.max(), min=0.0)
    if high == low:  # an all-zero tensor: ORT uses scale 1, zero point 0
        return torch.zeros_like(x), torch.tensor(1.0), torch.tensor(0.0)
    scale = (high - low) / UINT8_MAX
    zero_point = torch.round(torch.clamp(-low / scale, 0, UINT8_MAX))
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, UINT8_MAX)
    return q, scale, zero_point


def int8_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` as ORT computes a dynamically quantised MatMul (+ Add bias)."""
    q_x, scale_x, zero_point = quantize_activation(x)
    q_w, scale_w = quantize_weight(weight)
    accumulated = torch.matmul((q_x - zero_point).double(), q_w.double().t())  # exact integers
    out = accumulated.float() * (scale_x * scale_w)
    if bias is not None:
        out = out + bias.float()
    return out.to(x.dtype)


def _int8_patch_conv(original):
    """``F.conv2d`` that computes a patch-cutting convolution as an int8 MatMul over the patches."""

    def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        kernel = tuple(weight.shape[2:])
        stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        patches_only = (stride == kernel and groups == 1 and not any(_pair(padding)) and set(_pair(dilation)) == {1}
                        and x.shape[2] % kernel[0] == 0 and x.shape[3] % kernel[1] == 0)
        if not patches_only:
            return original(x, weight, bias, stride, padding, dilation, groups)
        batch, channels, height, width = x.shape
        rows, cols = height // kernel[0], width // kernel[1]
        patches = (x.reshape(batch, channels, rows, kernel[0], cols, kernel[1]).permute(0, 2, 4, 1, 3, 5)
                   .reshape(batch, rows * cols, -1))
        out = int8_linear(patches, weight.reshape(weight.shape[0], -1), bias)
        return out.transpose(1, 2).reshape(batch, weight.shape[0], rows, cols)

    return conv2d


def _pair(value) -> tuple:
    return (value, value) if isinstance(value, int) else tuple(value)


def q4_dequantize(weight: torch.Tensor, *, block_size: int = 32, symmetric: bool = True) -> torch.Tensor:
    """A linear's (out, in) weight after onnxruntime's 4-bit block quantisation and back
    (``quantize_matmul_4bits``, the rule of :func:`_block_quantize`)."""
    q, scale = _block_quantize(weight, bits=4, block_size=block_size, symmetric=symmetric)
    return (q * scale[..., None]).reshape(weight.shape).to(weight.dtype)


def q8_dequantize(weight: torch.Tensor, *, block_size: int = 32) -> torch.Tensor:
    """A linear's (out, in) weight after onnxruntime's symmetric 8-bit block quantisation and back
    (``quantize_matmul_8bits``: ``scale = m / -128``, zero point 128, see :func:`_block_quantize`)."""
    q, scale = _block_quantize(weight, bits=8, block_size=block_size, symmetric=True)
    return (q * scale[..., None]).reshape(weight.shape).to(weight.dtype)


def _block_quantize(weight: torch.Tensor, *, bits: int, block_size: int, symmetric: bool
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(``q - zero_point`` as float32, shape (out, in / block_size, block_size); float32 scales, one
    per block) of onnxruntime's ``bits``-bit block quantisation of a linear's (out, in) weight.

    As ``quantize_matmul_{4,8}bits`` (MLAS) does it, per block of ``block_size`` inputs of one
    output, with ``half = 2 ** (bits - 1)`` and ``top = 2 ** bits - 1``: symmetric ``scale = m / -half``
    with ``m`` the block's max if ``|max| > |min|``, else its min, zero point ``half``; asymmetric
    ``scale = (max(hi, 0) - min(lo, 0)) / top``, zero point ``round(-min / scale)``;
    ``q = clamp(round_half_away(v * (1 / scale) + zp), 0, top)``, all in float32. Checked bit for
    bit against ORT's stored initializers in tests/models/test_int8_reference.py."""
    half, top = 2 ** (bits - 1), 2**bits - 1
    w = _in_blocks(weight, block_size)
    high, low = w.amax(dim=-1), w.amin(dim=-1)
    if symmetric:
        scale = torch.where(high.abs() > low.abs(), high, low) / -half
        zero_point = torch.full_like(scale, float(half))
    else:
        low, high = low.clamp(max=0), high.clamp(min=0)
        scale = (high - low) / top
        safe = torch.where(scale == 0, torch.ones_like(scale), scale)
        zero_point = _round_half_away(torch.where(scale == 0, low, -low / safe)).clamp(0, top)
    reciprocal = torch.where(scale == 0, torch.zeros_like(scale), 1 / torch.where(scale == 0, 1, scale))
    q = _round_half_away(w * reciprocal[..., None] + zero_point[..., None]).clamp(0, top)
    return q - zero_point[..., None], scale


def _in_blocks(t: torch.Tensor, block_size: int) -> torch.Tensor:
    """``t`` as float32 with its last dimension (K) cut into blocks: shape (..., K / block_size, block_size)."""
    in_features = t.shape[-1]
    if in_features % block_size:
        raise ValueError(f"in_features {in_features} is not a multiple of the block size {block_size}")
    return t.float().reshape(*t.shape[:-1], in_features // block_size, block_size)


def quantize_activation_rows(x: torch.Tensor, *, block_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values as float32, shape (..., K / block_size, block_size); float32 scales, one per
    block) of MLAS's ``QuantizeARow_CompInt8``: each row of ``x`` alone, per block of
    ``block_size`` along K, ``scale = amax / 127`` with ``amax = max|a|``, and
    ``q = round_half_even(a * (127 / amax))``: the reciprocal is that one float32 division (not
    ``1 / scale``), the product is float32 and ``_mm512_roundscale_ps`` rounds halves to even
    (as ``torch.round``). An all-zero block gets scale 0. Checked bit for bit in
    tests/models/test_int8_reference.py."""
    blocks = _in_blocks(x, block_size)
    amax = blocks.abs().amax(dim=-1)
    nonzero = torch.where(amax == 0, torch.ones_like(amax), amax)
    # A tensor division: torch computes ``127 / tensor`` as ``reciprocal(tensor) * 127``, off by an ulp.
    inverse = torch.where(amax == 0, torch.zeros_like(amax), torch.full_like(amax, INT8_MAX) / nonzero)
    return torch.round(blocks * inverse[..., None]), amax / INT8_MAX


def q8_rows_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                   block_size: int = 32) -> torch.Tensor:
    """``F.linear`` as ORT computes an 8-bit symmetric ``MatMulNBits`` with accuracy_level 4 (CPU, MLAS):
    activations quantised per row and block (:func:`quantize_activation_rows`), weights per output
    and block (:func:`q8_dequantize`'s rule), each block's int8 x int8 dot product exact, scaled by
    ``scale_a * scale_w`` in float32 and the blocks summed (MLAS adds them in its own order and
    through a zero-point correction, so the float sum may differ from ORT's in the last bits)."""
    q_x, scale_x = quantize_activation_rows(x, block_size=block_size)
    q_w, scale_w = _block_quantize(weight, bits=8, block_size=block_size, symmetric=True)
    out = torch.zeros(*x.shape[:-1], weight.shape[0], dtype=torch.float32)
    for k in range(q_w.shape[1]):
        # |dot| <= block_size * 127 * 128 < 2**24 (blocks up to 1024): exact in float32, in any order.
        dot = torch.matmul(q_x[..., k, :], q_w[:, k, :].t())
        out = out + dot * (scale_x[..., k, None] * scale_w[:, k])
    if bias is not None:
        out = out + bias.float()
    return out.to(x.dtype)


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's ``roundf``: halves away from zero (torch.round rounds them to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


@contextlib.contextmanager
def emulate_ort_int8(*, patch_convs: bool = False) -> Iterator[None]:
    """Within the block every ``F.linear`` (so every ``nn.Linear``) is an ORT int8 MatMul, and with
    ``patch_convs`` every patch-cutting ``F.conv2d`` too (CLIP's int8 graphs)."""
    original_linear, original_conv = F.linear, F.conv2d
    F.linear = int8_linear
    if patch_convs:
        F.conv2d = _int8_patch_conv(original_conv)
    try:
        yield
    finally:
        F.linear, F.conv2d = original_linear, original_conv


def reference_generate(
    family: str, checkpoint_dir, images, prompt: str, max_new_tokens: int, *, dtype: str = "int8",
    int8_decoder: str = "per_tensor",
) -> list[list[int]]:
    """Greedy tokens of a tiny family's torch reference with its linears emulated as in the ONNX
    graphs of ``dtype``: ``"int8"`` (every family; SmolVLM's decoder ``int8_decoder="per_tensor"``
    or ``"per_row"``) or ``"q4"`` (SmolVLM only); see the module docstring."""
    import importlib

    if family == "smolvlm" and dtype == "int8":
        dtype = f"int8/{int8_decoder}"
    if dtype not in (_SMOLVLM_DECODER_LINEARS if family == "smolvlm" else ("int8",)):
        raise ValueError(f"no {dtype} reference for {family}")
    tiny = importlib.import_module(f"memesearch.ml.families.{family}.tiny")
    if family == "moondream":
        # The int8 bundle ships the BOS cache that the export computed once in fp32 torch
        # (initial_kv_cache.npy, shared with the fp32 bundle): compute it before emulating.
        reference = tiny.Reference(checkpoint_dir)
        with emulate_ort_int8():
            return [reference.generate(image, prompt, max_new_tokens) for image in images]
    if family == "smolvlm":
        with _smolvlm_one_tile_per_run(), _smolvlm_linears(_SMOLVLM_DECODER_LINEARS[dtype]):
            return tiny.reference_generate(checkpoint_dir, images, prompt, max_new_tokens)
    with emulate_ort_int8():
        return tiny.reference_generate(checkpoint_dir, images, prompt, max_new_tokens)


@contextlib.contextmanager
def _smolvlm_one_tile_per_run() -> Iterator[None]:
    """Run the Idefics3 vision tower + connector on one tile at a time, as our ONNX captioner does
    (memesearch/ml/families/smolvlm/onnx_backend.py ``_image_features``): in fp32 that equals one batched run, but
    int8 activation scales are per tensor, so they depend on which tiles share a run."""
    from transformers.models.idefics3.modeling_idefics3 import Idefics3Model

    original = Idefics3Model.get_image_features

    def get_image_features(self, pixel_values, pixel_attention_mask=None, **kwargs):
        batch, images = pixel_values.shape[:2]
        rows = []
        for b in range(batch):
            tiles = []
            for i in range(images):
                mask = None if pixel_attention_mask is None else pixel_attention_mask[b : b + 1, i : i + 1]
                output = original(self, pixel_values[b : b + 1, i : i + 1], mask, **kwargs)
                tiles.extend(output.pooler_output)
            rows.append(torch.cat(tiles))
        output.pooler_output = rows  # only the pooled features are used by generation
        return output

    Idefics3Model.get_image_features = get_image_features
    try:
        yield
    finally:
        Idefics3Model.get_image_features = original


def _q4_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A 4-bit ``MatMulNBits`` at accuracy_level 1: fp32 activations times the dequantised weights."""
    return _FP32_LINEAR(x, q4_dequantize(weight), bias)


#: The emulation of SmolVLM's decoder linears (decoder layers and LM head) per ONNX dtype (int8:
#: per int8 decoder, models.yml ``sources.onnx.int8_decoder``).
_SMOLVLM_DECODER_LINEARS = {"int8/per_tensor": int8_linear, "int8/per_row": q8_rows_linear, "q4": _q4_linear}


@contextlib.contextmanager
def _smolvlm_linears(decoder_linear) -> Iterator[None]:
    """Linears of the vision tower + connector as ORT int8 (per tensor), every other one (the
    decoder and its LM head) as ``decoder_linear(x, weight, bias)``."""
    from transformers.models.idefics3.modeling_idefics3 import Idefics3Model

    original_linear, original_features = F.linear, Idefics3Model.get_image_features
    in_vision = [False]

    def linear(x, weight, bias=None):
        return (int8_linear if in_vision[0] else decoder_linear)(x, weight, bias)

    @functools.wraps(original_features)  # generate() reads its signature to route pixel_values
    def get_image_features(self, *args, **kwargs):
        in_vision[0] = True
        try:
            return original_features(self, *args, **kwargs)
        finally:
            in_vision[0] = False

    F.linear, Idefics3Model.get_image_features = linear, get_image_features
    try:
        yield
    finally:
        F.linear, Idefics3Model.get_image_features = original_linear, original_features
