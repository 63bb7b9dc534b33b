"""Vietnamese by default, English on request.

Web pages follow the language chosen with ``?lang=`` (kept in a cookie), then the user's
saved preference, then the deployment default (``HIS_DEFAULT_LOCALE``, ``vi``). The REST
API also honours ``Accept-Language``: machine clients have no cookie. Browsers'
Accept-Language is ignored for pages because hospital PCs often ship with English set
while their users expect Vietnamese.
"""

from __future__ import annotations

from flask import Flask, current_app, g, has_request_context, request
from flask_babel import Babel
from flask_login import current_user

LOCALES = ("vi", "en")
LANG_COOKIE = "his_lang"


def select_locale() -> str:
    if not has_request_context():  # CLI jobs and background workers
        return current_app.config["HIS_SETTINGS"].default_locale
    chosen = request.args.get("lang")
    if chosen in LOCALES:
        g.set_lang_cookie = chosen
        return chosen
    # Machine clients (REST and FHIR) say their language in Accept-Language.
    if request.path.startswith(("/api", "/fhir")):
        best = request.accept_languages.best_match(LOCALES)
        if best:
            return best
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LOCALES:
        return cookie
    if current_user and current_user.is_authenticated and current_user.user.locale in LOCALES:
        return current_user.user.locale
    return current_app.config["HIS_SETTINGS"].default_locale


def _remember_choice(response):
    lang = g.get("set_lang_cookie")
    if lang:
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 24 * 3600,
            samesite="Lax",
            httponly=True,
            secure=current_app.config["SESSION_COOKIE_SECURE"],
        )
    return response


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", "translations")
    Babel(app, locale_selector=select_locale, default_timezone="Asia/Ho_Chi_Minh")
    app.after_request(_remember_choice)
