"""The clip model family (see memesearch/ml/families/__init__.py for the file layout)."""
