"""Shared request helpers for the routers."""

from __future__ import annotations

from fastapi import Request

from memesearch.app import Core


def core_of(request: Request) -> Core:
    return request.app.state.core


def render(request: Request, template: str, context: dict, status_code: int = 200):
    return request.app.state.templates.TemplateResponse(request, template, context, status_code=status_code)
