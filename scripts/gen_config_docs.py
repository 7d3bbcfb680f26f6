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
pictures below the model's `relevance_floor` are no hit, so a query no picture is about adds
nothing. "Similar memes" uses template groups first, then image vectors, then text embeddings.
Search by image (`memesearch search --image FILE`, the web page's upload, paste or drop) adds
the memes whose image vector is within the model's `image_floor` of the picture's, after the
same file, its copies and its template siblings.

### Relevance floors

Both floors are cosines, set per model in `models.yml`; there is no environment variable.
To change one, write only that key to `<data dir>/models.yml`, e.g.

```yaml
models:
  clip-vit-b-32:
    relevance_floor: 0.25   # text searches show unrelated pictures: raise it
    image_floor: 0.8        # search by image lists memes unlike the picture: raise it
```

| floor | shipped | what it compares | where the value comes from |
|---|---|---|---|
| `relevance_floor` | 0.22 (both CLIPs) | a text query with a meme's picture | OpenAI CLIP ViT-B/32 scores unrelated image–text pairs near 0.15–0.2 and matching ones near 0.25–0.35; LAION kept web image/alt-text pairs at a ViT-B/32 cosine of at least 0.3 (LAION-400M, chosen by human review; 0.28–0.29 "also seemed okay") and 0.28 (LAION-5B). A short search query fits a picture less closely than an alt-text, so the floor sits below those. |
| `image_floor` | 0.75 (both CLIPs) | the searched picture with a meme's picture | Re-saved or cropped copies of one picture score 0.95–0.99 (Immich's duplicate detection flags CLIP vectors within cosine distance 0.01, and warns that 0.1 gives false positives); the "similar" tier must also admit the same scene with another caption, so it sits well below. Copies are found before this tier anyway (bytes, perceptual hash, template features). |

Neither is calibrated on the real weights yet (this project's machines cannot download them).
Once a CLIP is pulled, measure both on rendered sample memes:

```bash
PYTHONPATH=. python bench/calibrate_relevance_floor.py --visual --home <data dir>
```

It prints the cosines of real queries to their meme's picture against nonsense queries'
best picture, and of a screenshot of each meme to that meme against the nearest other meme,
with how many of each every candidate floor keeps.
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
