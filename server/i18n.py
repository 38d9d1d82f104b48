"""Indonesian and English: JSON catalogs in ``web/i18n``, chosen by ``?lang=``, a cookie, or
Accept-Language (Indonesian by default)."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

LANGUAGES = ("id", "en")
DEFAULT_LANGUAGE = "id"
LANG_COOKIE = "ruang_lang"


class CatalogError(RuntimeError):
    """A catalog is missing or its keys differ from the other languages'."""


class Catalogs:
    def __init__(self, directory: Path) -> None:
        self.messages: dict[str, dict[str, str]] = {}
        for lang in LANGUAGES:
            path = directory / f"{lang}.json"
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CatalogError(f"cannot load {path}: {exc}") from None
            self.messages[lang] = {str(k): str(v) for k, v in data.items()}
        keys = {lang: set(m) for lang, m in self.messages.items()}
        first = keys[LANGUAGES[0]]
        for lang, ks in keys.items():
            if ks != first:
                raise CatalogError(f"catalog {lang} differs in keys: {sorted(ks ^ first)[:5]}")

    def get(self, lang: str, key: str) -> str:
        table = self.messages.get(lang) or self.messages[DEFAULT_LANGUAGE]
        return table.get(key, key)

    def for_js(self, lang: str, prefix: str = "js.") -> dict[str, str]:
        table = self.messages.get(lang) or self.messages[DEFAULT_LANGUAGE]
        return {k[len(prefix) :]: v for k, v in table.items() if k.startswith(prefix)}


def _from_accept_language(header: str) -> str | None:
    best: tuple[float, str] | None = None
    for part in header.split(","):
        bits = part.strip().split(";")
        tag = bits[0].strip().lower()
        quality = 1.0
        for b in bits[1:]:
            b = b.strip()
            if b.startswith("q="):
                try:
                    quality = float(b[2:])
                except ValueError:
                    quality = 0.0
        primary = tag.split("-")[0]
        if primary == "in":  # the old ISO code for Indonesian
            primary = "id"
        if primary in LANGUAGES and (best is None or quality > best[0]):
            best = (quality, primary)
    return best[1] if best else None


def choose_language(request: web.Request) -> str:
    query = request.query.get("lang", "")
    if query in LANGUAGES:
        return query
    cookie = request.cookies.get(LANG_COOKIE, "")
    if cookie in LANGUAGES:
        return cookie
    return _from_accept_language(request.headers.get("Accept-Language", "")) or DEFAULT_LANGUAGE


def remember_language(request: web.Request, response: web.StreamResponse) -> None:
    """A ``?lang=`` choice sticks (a cookie with nothing else in it)."""
    query = request.query.get("lang", "")
    if query in LANGUAGES and request.cookies.get(LANG_COOKIE) != query:
        response.set_cookie(
            LANG_COOKIE,
            query,
            max_age=365 * 24 * 3600,
            path="/",
            secure=True,
            httponly=True,
            samesite="Lax",
        )
