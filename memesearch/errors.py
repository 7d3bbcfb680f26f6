"""The one exception family of memesearch.

Every error a user can cause or fix carries a status code and a message that
says what to do. The CLI and HTTP layers translate these in one place each, so
no other module formats errors for people.
"""

from __future__ import annotations


class MemeSearchError(Exception):
    """Base class. ``status`` follows HTTP semantics so the web layer can reuse it."""

    status = 500

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None,
                 action: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: Technical text for people who want it (CLI --verbose, a collapsed block on the web).
        self.details = details
        #: Something the UI can offer as a button, e.g. {"kind": "download", "model": id, "label": ...}.
        self.action = action

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(MemeSearchError):
    """Bad settings or a missing optional dependency."""

    status = 500


class NotFoundError(MemeSearchError):
    status = 404


class InvalidInputError(MemeSearchError):
    """The request or file is unusable (bad query, corrupt image, wrong format)."""

    status = 422


class ImageError(InvalidInputError):
    """An image file that cannot be decoded safely."""


class SchemaTooNewError(MemeSearchError):
    """The database was written by a newer memesearch."""

    status = 500


class ModelUnavailableError(MemeSearchError):
    """No backend could load or run a model; the message says what to install or download."""

    status = 503


class ModelNotReadyError(ModelUnavailableError):
    """A model cannot run here yet (files not downloaded, packages missing): checked before any
    work is queued, so nothing starts that is bound to fail."""

    status = 409


class DiskFullError(MemeSearchError):
    """The disk holding the database is full; the failed write was rolled back, nothing else lost."""

    status = 507


class MissingDependencyError(ConfigError):
    """An optional extra is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed.",
            hint=f"pip install 'memesearch[{extra}]'",
        )
        self.package = package
        self.extra = extra


def require(module: str, *, extra: str, purpose: str):
    """Import an optional dependency lazily, or raise a helpful MissingDependencyError."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc


class ReadOnlyError(MemeSearchError):
    """The data dir cannot be written: reads work, changes are refused with this sentence."""

    status = 503
