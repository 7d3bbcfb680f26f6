"""Writes docs/CONFIGURATION.md from the Settings class, so the docs cannot drift.

    .venv/bin/python scripts/gen_config_docs.py          # rewrite the file
    .venv/bin/python scripts/gen_config_docs.py --check  # exit 1 if it is stale (used by the tests)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memesearch.config import Settings  # noqa: E402

TARGET = Path(__file__).resolve().parent.parent / "docs" / "CONFIGURATION.md"

HEADER = """# Configuration

Every setting is an environment variable `MEMESEARCH_<NAME>` (upper case). `--data-dir`
overrides `MEMESEARCH_HOME`. Lists accept a JSON list or comma-separated values where noted.
This file is generated from `memesearch/config.py` by `scripts/gen_config_docs.py`; a test
fails when they disagree.

| variable | default | meaning |
|---|---|---|
"""


FOOTER = """
## Model downloads

These standard Hugging Face variables are read too (without the `MEMESEARCH_` prefix):

| variable | meaning |
|---|---|
| `HF_ENDPOINT` | Hub to download models from (default `https://huggingface.co`); any server with the hub's `/<repo>/resolve/<revision>/<path>` layout, such as a mirror. |
| `HF_TOKEN` | Sent as a bearer token when downloading (gated or private repos). |
| `HF_HUB_OFFLINE` | `1`: never try to download; `models pull` says at once which files to fetch by hand. |
"""

SAVED_FROM_WEB = """
## Saved from the web app

The web Settings page writes `<data dir>/settings.json` (file mode 0600) and
`<data dir>/web-preferences.json`:

| saved setting | used by |
|---|---|
| default caption model | the web app's "describe" actions (starts from `MEMESEARCH_CAPTION_MODEL`; `fake` is offered only with `MEMESEARCH_DEV=1`) |
| OpenAI-compatible endpoint URL and model | the `openai` model and every model without its own `api` source; empty values leave `models.yml` in charge |
| API key | the same; wins over `MEMESEARCH_OPENAI_API_KEY`. Never shown back: the page says whether a key is set; saving an empty field keeps it, "Remove key" deletes it |
"""


VISUAL_SEARCH = """
## Visual search

`MEMESEARCH_VISUAL_MODEL` (default `clip-vit-b-32`) names the image-text model. It is used
only once it can run here: after `memesearch models pull clip-vit-b-32` (about 600 MB), or
with the `[torch]` extra and the transformers weights in the Hugging Face cache, or always when
`MEMESEARCH_ML_URLS` points at an ML service (the service owns the models; if it cannot run the
model, visual search pauses for a minute and search goes on by words). Until then nothing
changes: `index` skips the stage and search ranks by words. Set it to `none` to keep visual
search off even when the model is downloaded (an unknown id or a caption model is an error).

| model id | model | download | notes |
|---|---|---|---|
| `clip-vit-b-32` (default) | OpenAI CLIP ViT-B/32, Immich's ONNX export `immich-app/ViT-B-32__openai` | about 600 MB | 32-px patches: the cheapest image vector |
| `clip-vit-b-16` | OpenAI CLIP ViT-B/16, Immich's ONNX export `immich-app/ViT-B-16__openai` | about 600 MB | same text tower and 512-d space; 16-px patches see finer detail at about 4x the compute per image (17.6 against 4.4 GFLOPs) |

Both are pulled like caption models (`memesearch models pull clip-vit-b-16`, or `--from FOLDER`
with Immich's files: `config.json`, `visual/model.onnx`, `visual/preprocess_cfg.json`,
`textual/model.onnx`, `textual/tokenizer.json`, `textual/tokenizer_config.json`); the int8
graphs are quantised locally from fp32 on first use. Vectors of the two never mix: each has its
own space, so switching re-embeds the library once.

Once installed, `index` (and index runs in the background) adds one image vector per meme
(stage `image_embed`, resumable, only new or changed files), stored under the model space
`image:<model id>`: choosing another model starts a new space and never mixes the two.
Text searches (hybrid mode) then also rank memes by how well their picture fits the query;
pictures below the model's `relevance_floor` (models.yml, 0.22 for ViT-B/32; override it in
`<data dir>/models.yml`) are no hit, so a query no picture is about adds nothing.
"Similar memes" uses template groups first, then image vectors, then text embeddings.
"""


def render() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "platform user data dir" if name == "home" else "empty"
        else:
            default = repr(field.default) if field.default not in ("", None) else "empty"
        rows.append(f"| `MEMESEARCH_{name.upper()}` | {default} | {field.description or ''} |")
    return HEADER + "\n".join(rows) + "\n" + VISUAL_SEARCH + FOOTER + SAVED_FROM_WEB


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET} is stale: run scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
