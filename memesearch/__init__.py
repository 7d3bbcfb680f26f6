"""memesearch: a self-hosted meme search engine."""

__version__ = "0.1.0"
