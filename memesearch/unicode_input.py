"""Text that cannot be stored: lone surrogates in JSON, invalid UTF-8 in URLs, files and arguments.

JSON may spell a lone surrogate (``"\\ud800"``) and Python decodes it into a ``str`` that no
UTF-8 codec, SQLite or tokenizer accepts; a URL may percent-encode bytes that are not UTF-8,
which the framework would silently turn into U+FFFD. Both are refused at the edge with a 422,
the same way for the web app and the ML service, instead of failing deep inside as a 500.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from memesearch.errors import InvalidInputError


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_text(value: object, where: str = "the request body") -> object:
    """``value`` unchanged, or InvalidInputError when any string in it (keys too) is not valid Unicode."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                raise InvalidInputError(f"{where} contains invalid Unicode (a lone surrogate such as \\ud800)",
                                        hint="send text encoded as valid UTF-8")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value


def reject_surrogates(text: str) -> str:
    """A pydantic AfterValidator: ValueError (422) for a string that is not valid Unicode."""
    if has_lone_surrogate(text):
        raise ValueError("contains invalid Unicode (a lone surrogate)")
    return text


def decode_utf8(data: bytes, what: str) -> str:
    """Bytes as UTF-8 text, or InvalidInputError naming ``what`` and the offending byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInputError(f"{what} is not valid UTF-8 (line {line}, byte {exc.start})",
                                hint="save it as UTF-8 text") from exc


def url_problem(scope: dict) -> str | None:
    """Why the request's path or query string is not valid percent-encoded UTF-8, or None."""
    raw_path = scope.get("raw_path") or b""
    for part, what in ((raw_path, "the URL path"), (scope.get("query_string") or b"", "the query string")):
        try:
            unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return f"{what} is not valid UTF-8"
    return None


class Utf8UrlMiddleware:
    """ASGI middleware: a 422 problem+json (memesearch/problems.py, the error body of both apps)
    for URLs whose percent-encoded bytes are not UTF-8."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            problem = url_problem(scope)
            if problem is not None:
                from memesearch.problems import PROBLEM_JSON, problem_bytes

                body = problem_bytes(422, problem)
                await send({"type": "http.response.start", "status": 422,
                            "headers": [(b"content-type", PROBLEM_JSON.encode()),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
