"""Jinja2 rendering with the request's language and CSRF token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from aiohttp_session import get_session

from server.auth import csrf_token
from server.i18n import LANGUAGES, choose_language, remember_language
from server.keys import CATALOGS, JINJA

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def make_jinja() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(WEB_DIR / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        enable_async=False,
    )


async def render(
    request: web.Request,
    template: str,
    status: int = 200,
    *,
    with_session: bool = True,
    **context: Any,
) -> web.Response:
    """Render a page. ``with_session=False`` (client pages) touches no session: no cookie."""
    lang = choose_language(request)
    catalogs = request.app[CATALOGS]
    token = ""
    if with_session:
        token = csrf_token(await get_session(request))

    def t(key: str, **params: object) -> str:
        text = catalogs.get(lang, key)
        return text.format(**params) if params else text

    page = (
        request.app[JINJA]
        .get_template(template)
        .render(
            t=t,
            lang=lang,
            languages=LANGUAGES,
            csrf=token,
            path=request.path,
            js_strings=json.dumps(catalogs.for_js(lang), ensure_ascii=True).replace("<", "\\u003c"),
            **context,
        )
    )
    response = web.Response(text=page, content_type="text/html", status=status)
    remember_language(request, response)
    return response
