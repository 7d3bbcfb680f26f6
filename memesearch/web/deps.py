"""Shared request helpers for the routers."""

from __future__ import annotations

from fastapi import Request
from pydantic import BaseModel, ValidationError

from memesearch.app import Core
from memesearch.errors import InvalidInputError
from memesearch.unicode_input import check_text


def core_of(request: Request) -> Core:
    return request.app.state.core


def render(request: Request, template: str, context: dict, status_code: int = 200):
    return request.app.state.templates.TemplateResponse(request, template, context, status_code=status_code)


async def json_body(request: Request, model: type[BaseModel] | None = None) -> dict:
    """A JSON object body (checked against ``model`` when given: the fields sent, validated),
    or a clear 422."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidInputError("the request body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise InvalidInputError("the request body must be a JSON object")
    check_text(body)
    return body if model is None else validated(model, body)


def validated(model: type[BaseModel], body: dict) -> dict:
    """The fields of ``body`` that were sent, checked against ``model``; a clear 422 otherwise."""
    try:
        return model.model_validate(body).model_dump(exclude_unset=True)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()[:5]]
        raise InvalidInputError("invalid request: " + "; ".join(parts)) from exc
