"""The ML inference service (`memesearch ml serve`): OCR, captions and embeddings over HTTP."""
