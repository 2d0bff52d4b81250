"""URLs fit for a log line, a page or a report: their passwords and secret query values as ***."""
from __future__ import annotations

import re

_USERINFO = re.compile(r"^(?P<pre>(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//|)(?P<info>[^/?#]*)@")
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:[^=&;#]*(?:pass|pwd|senha|secret|token|key|auth)[^=&;#]*)=)[^&;#]*")


def redact_url(url: str) -> str:
    """``url`` without its secrets: ``http://user:pass@ngc/RPC2`` -> ``http://user:***@ngc/RPC2``.

    The password of the user-info part and the value of query keys that look
    like secrets (password, pwd, senha, token, key, secret, auth) become
    ``***``. Never raises, whatever the string.
    """
    if not isinstance(url, str):
        return url
    if "@" in url:
        m = _USERINFO.match(url)
        if m and ":" in m.group("info"):
            user = m.group("info").partition(":")[0]
            url = f"{m.group('pre')}{user}:***@{url[m.end():]}"
    if "=" in url:
        url = _SECRET_QUERY.sub(r"\1***", url)
    return url
