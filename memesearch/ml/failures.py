"""Why a model backend was skipped or failed, kept as exceptions so the reason and its fix
travel apart (``message`` and ``hint`` of :class:`memesearch.errors.MemeSearchError`);
text for people is made from them only where it is shown."""

from __future__ import annotations

from memesearch.errors import ConfigError, MemeSearchError, MissingDependencyError, ModelUnavailableError


class ApiKeyMissingError(ConfigError):
    """The API backend has no key: none saved on the Settings page, none in its environment variable."""


class BackendRunError(ModelUnavailableError):
    """A backend that loaded failed while running; ``__cause__`` is what it raised."""

    def __init__(self, doing: str, cause: BaseException) -> None:
        hint = cause.hint if isinstance(cause, MemeSearchError) else None
        super().__init__(f"failed while {doing}: {_reason(cause)}", hint=hint)
        self.__cause__ = cause


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, MemeSearchError) else f"{exc.__class__.__name__}: {exc}"


def failure_reason(exc: BaseException) -> str:
    """One line for people: the reason, then ``-> the fix`` when there is one."""
    if isinstance(exc, MemeSearchError) and exc.hint:
        return f"{_reason(exc)} -> {exc.hint}"
    return _reason(exc)


def first_sentence(exc: BaseException) -> str:
    """The reason alone, first line only (the page shows the rest folded away)."""
    return _reason(exc).split("\n", 1)[0]


def user_fix(exc: BaseException) -> str | None:
    """The command that fixes ``exc`` when the user can fix it by installing, downloading or
    setting something; None for failures no command fixes (a corrupt graph, a crash)."""
    from memesearch.ml.model_files import MissingFilesError

    if isinstance(exc, BackendRunError):
        return user_fix(exc.__cause__) if exc.__cause__ is not None else None
    if isinstance(exc, (MissingDependencyError, MissingFilesError, ApiKeyMissingError)):
        return exc.hint
    return None
