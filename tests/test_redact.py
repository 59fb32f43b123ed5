"""What a user may see of a URL (misp_ti.redact)."""

from __future__ import annotations

import pytest

from misp_ti.redact import REDACTED, public_url, redact_url, url_passwords


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://misp.example", "https://misp.example"),
        ("https://user:s3cret@misp.example:8443/misp?key=abc#frag", "https://misp.example:8443/misp"),
        ("http://user@[::1]:9200/", "http://[::1]:9200/"),
        ("https://MISP.Example/path", "https://misp.example/path"),
    ],
)
def test_a_public_url_has_no_user_info_query_or_fragment(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_redact_url_hides_only_the_password_of_every_url_in_a_text() -> None:
    text = "GET https://me:pw%40x@a.example/ failed, proxy http://p:secret@proxy:3128 too"
    assert redact_url(text) == f"GET https://me:{REDACTED}@a.example/ failed, proxy http://p:{REDACTED}@proxy:3128 too"
    assert url_passwords("https://me:pw%40x@a.example/", None, "https://a.example") == ["pw%40x", "pw@x"]
