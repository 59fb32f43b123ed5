"""URLs and text without their secrets: one place for what a user may see of a URL.

A URL's user-info password is a secret like the API key (issue 14): it never
reaches a log line, an error, ``config show`` or the state file.

* :func:`redact_url`: any text, each ``scheme://user:password@`` with the
  password replaced (messages quoting a URL as configured);
* :func:`public_url`: one URL as shown and stored (banner, ``config check``,
  the state's source binding): no user-info, no query, no fragment;
* :func:`url_passwords`: the passwords to hand to the log filter.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "**********"

_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*):(?P<password>[^@/\s]*)@")


def redact_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced."""
    return _USERINFO_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)


def public_url(url: str) -> str:
    """``url`` without user-info, query or fragment (``https://u:pw@host/p?q`` -> ``https://host/p``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def url_password(url: str | None) -> str | None:
    """The password in ``url``'s user-info, if any (a secret, like an API key)."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return password or None


def url_passwords(*urls: str | None) -> list[str]:
    """The passwords in ``urls``, as written and percent-decoded (both may reach a message)."""
    found = []
    for url in urls:
        password = url_password(url)
        if password:
            found += [password, unquote(password)]
    return found
