"""The web app: ``create_app(settings)`` builds it; ``memesearch serve`` runs it."""

from memesearch.web.app import create_app

__all__ = ["create_app"]
