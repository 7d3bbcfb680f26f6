"""The florence2 model family (see memesearch/ml/families/__init__.py for the file layout)."""
