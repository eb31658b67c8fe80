"""redact: secrets masked in URLs and removed from text."""

from __future__ import annotations

import yarl

from listingbot.redact import redact_text, redact_url


def test_redact_url_masks_the_key_parameter_only() -> None:
    """?key=... becomes key=***; other parameters and the path stay as they were."""
    url = "https://api.kotohomes.com/v1/listings?states%5B%5D=NY&key=abc123&limit=50"
    assert redact_url(url, {"key"}) == (
        "https://api.kotohomes.com/v1/listings?states%5B%5D=NY&key=***&limit=50"
    )


def test_redact_url_accepts_yarl_urls_and_default_names() -> None:
    """A yarl URL works too, and access_token is masked by default."""
    url = yarl.URL("http://h/x").with_query({"access_token": "t0k", "page": "2"})
    assert redact_url(url) == "http://h/x?access_token=***&page=2"


def test_redact_url_matches_parameter_names_case_insensitively() -> None:
    """KEY=... is masked as well as key=..."""
    assert redact_url("http://h/?KEY=abc", {"key"}) == "http://h/?KEY=***"


def test_redact_url_masks_a_userinfo_password() -> None:
    """user:password@host keeps the user, not the password."""
    assert redact_url("https://bob:hunter2@h/x") == "https://bob:***@h/x"


def test_redact_url_keeps_urls_without_secrets_unchanged() -> None:
    """Nothing to mask: the URL is returned as given, fragment included."""
    assert redact_url("http://h/x?page=2#top") == "http://h/x?page=2#top"


def test_redact_text_removes_plain_and_url_encoded_secrets() -> None:
    """A secret is removed as written and in its URL-encoded forms."""
    secret = "a b/c+d"
    text = f"raw {secret} quoted a%20b%2Fc%2Bd plus a+b%2Fc%2Bd"
    assert redact_text(text, [secret]) == "raw *** quoted *** plus ***"


def test_redact_text_masks_the_longest_secret_first() -> None:
    """A secret that contains another is masked whole, not in pieces."""
    assert redact_text("tok-123456", ["123", "tok-123456"]) == "***"


def test_redact_text_ignores_empty_secrets() -> None:
    """An empty secret does not garble the text."""
    assert redact_text("hello", ["", "zz"]) == "hello"
