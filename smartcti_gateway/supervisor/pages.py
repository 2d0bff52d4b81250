"""The two HTML pages: the login form, and the board's frame.

The board itself is drawn in the browser (static/board.js) from JSON, with ``textContent`` only, so a
value from the PABX (an ANI, an agent id) can never become markup; the JSON is embedded in a
``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped, so it cannot close that tag.
Every text here comes from i18n.LABELS; the Content-Security-Policy (web.py) allows no inline script.
"""
from __future__ import annotations

import json
from html import escape

from .. import __version__
from . import i18n

ASSETS = f"/supervisor/static/{{name}}?v={escape(__version__)}"


def script_json(value: object) -> str:
    """JSON that is safe inside a <script> element."""
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _head(lang: str, title: str) -> str:
    return (f'<!doctype html>\n<html lang="{"pt-BR" if lang == "pt" else "en"}"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>{escape(title)}</title>\n'
            f'<link rel="stylesheet" href="{ASSETS.format(name="board.css")}">\n')


def _languages(lang: str) -> str:
    current = ' aria-current="true"'
    links = "".join(f'<a href="?lang={code}"{current if code == lang else ""} hreflang="{code}">{code.upper()}</a>'
                    for code in i18n.LANGUAGES)
    return f'<nav class="lang" aria-label="{escape(i18n.labels(lang)["language"])}">{links}</nav>'


def login_page(lang: str, *, message: str = "", user: str = "") -> str:
    t = i18n.labels(lang)
    note = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
    return (_head(lang, f'{t["login_title"]} · smartcti-gateway') + '</head><body class="login">\n'
            f'<main class="login-box"><h1>{escape(t["login_title"])}</h1>{_languages(lang)}{note}\n'
            '<form method="post" action="/supervisor/login" autocomplete="on">\n'
            f'<input type="hidden" name="lang" value="{escape(lang)}">\n'
            f'<label>{escape(t["user"])} <input name="user" id="user" autocomplete="username" required '
            f'maxlength="64" autocapitalize="none" value="{escape(user)}"></label>\n'
            f'<label>{escape(t["password"])} <input name="password" id="password" type="password" '
            'autocomplete="current-password" required maxlength="1024"></label>\n'
            f'<button type="submit" id="sign-in">{escape(t["sign_in"])}</button>\n'
            '</form></main></body></html>\n')


def board_page(lang: str, *, user: str, csrf: str, phone: str, board: dict) -> str:
    t = i18n.labels(lang)
    return (_head(lang, f'{t["title"]} · smartcti-gateway') +
            f'<meta name="csrf-token" content="{escape(csrf)}">\n'
            f'<meta name="supervisor-phone" content="{escape(phone)}">\n'
            '</head><body>\n'
            f'<header class="top"><h1>{escape(t["title"])}</h1>\n'
            f'<div class="who"><span>{escape(t["signed_in_as"])} <b id="me">{escape(user)}</b></span>\n'
            f'<span id="live" class="live off">{escape(t["reconnecting"])}</span>\n'
            f'{_languages(lang)}\n'
            '<form method="post" action="/supervisor/logout" class="logout">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'<button type="submit" id="sign-out">{escape(t["sign_out"])}</button></form></div></header>\n'
            f'<noscript><p class="error">{escape(t["no_script"])}</p></noscript>\n'
            '<main id="board"></main>\n'
            '<div id="toast" role="status" aria-live="polite"></div>\n'
            '<dialog id="confirm"><p id="confirm-text"></p>\n'
            f'<label id="reason-row">{escape(t["pause_reason"])} <select id="reason"></select></label>\n'
            f'<label id="phone-row">{escape(t["my_phone"])} <input id="phone" inputmode="tel" maxlength="64"></label>\n'
            f'<div class="buttons"><button type="button" id="confirm-cancel">{escape(t["cancel"])}</button>'
            f'<button type="button" id="confirm-ok" class="primary">{escape(t["confirm"])}</button></div>'
            '</dialog>\n'
            f'<script type="application/json" id="labels">{script_json(t)}</script>\n'
            f'<script type="application/json" id="initial">{script_json(board)}</script>\n'
            f'<script src="{ASSETS.format(name="board.js")}"></script>\n'
            '</body></html>\n')
