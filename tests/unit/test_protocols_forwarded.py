"""The proxy-header policy every worker shares: forwarder header names and the secure scheme."""

from __future__ import annotations

import pytest

from monoceros.protocols.errors import InvalidHTTPRequest, ProtocolError
from monoceros.protocols.forwarded import (
    ContradictorySchemeHeaders,
    forwarded_client,
    forwarded_scheme,
    forwarder_names,
    is_forwarder,
    mount,
    secure_scheme_table,
)

PROTO = ("X-FORWARDED-PROTO", "https")
SSL = ("X-FORWARDED-SSL", "on")


def test_forwarder_names_any_case() -> None:
    names = forwarder_names(["SCRIPT_NAME", "path_info "])
    assert names == frozenset({b"SCRIPT_NAME", b"PATH_INFO"})
    assert is_forwarder(b"Script_Name", names) and is_forwarder(b"path_info", names)
    assert not is_forwarder(b"x_forwarded_for", names)


def test_forwarder_star_and_empty() -> None:
    assert is_forwarder(b"x_anything", forwarder_names(["*"]))
    assert forwarder_names([]) is None
    assert not is_forwarder(b"script_name", None)


def test_secure_scheme_table() -> None:
    assert secure_scheme_table({"X-Forwarded-Proto": "HTTPS"}) == [("X-FORWARDED-PROTO", "https")]


@pytest.mark.parametrize(
    ("sent", "scheme"),
    [
        ([], "http"),
        ([(*PROTO, "https")], "https"),
        ([(*PROTO, "HTTPS")], "https"),  # any case, as before
        ([(*PROTO, "http")], "http"),
        ([(*PROTO, "ftp")], "http"),  # anything but the https value says http
        ([(*PROTO, "https"), (*SSL, "on")], "https"),
        ([(*PROTO, "http"), (*SSL, "off")], "http"),
        ([(*PROTO, "https"), (*PROTO, "https")], "https"),  # repeated, agreeing
        ([(*PROTO, "https, https")], "https"),  # the same, combined (RFC 9110 5.3)
        ([(*PROTO, " https ,\thttps")], "https"),
        ([(*PROTO, ""), (*SSL, "on")], "https"),  # empty list elements are ignored (5.6.1)
        ([(*PROTO, ",https,")], "https"),
    ],
)
def test_forwarded_scheme(sent: list[tuple[str, str, str]], scheme: str) -> None:
    assert forwarded_scheme(sent) == scheme


@pytest.mark.parametrize(
    "sent",
    [
        [(*PROTO, "https"), (*SSL, "off")],  # gunicorn's tests/requests/invalid/019
        [(*PROTO, "http"), (*SSL, "on")],
        [(*PROTO, "https"), (*PROTO, "http")],  # a repeated header that disagrees
        [(*PROTO, "https, http")],  # the same, combined (RFC 9110 5.3)
    ],
)
def test_contradictory_scheme_headers_are_a_400(sent: list[tuple[str, str, str]]) -> None:
    with pytest.raises(ContradictorySchemeHeaders) as info:
        forwarded_scheme(sent)
    exc = info.value
    assert isinstance(exc, InvalidHTTPRequest) and isinstance(exc, ProtocolError)
    assert exc.status == 400
    assert exc.reason.startswith("Contradictory scheme headers: X-FORWARDED-")
    assert "says https" in exc.reason and "says http" in exc.reason


TRUSTED = frozenset({"127.0.0.1", "10.0.0.2"})


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("203.0.113.9, 10.0.0.2", "203.0.113.9"),  # a second trusted proxy is skipped
        ("1.2.3.4, 203.0.113.9", "203.0.113.9"),  # what the client wrote itself is not believed
        ("1.2.3.4,203.0.113.9,10.0.0.2,127.0.0.1", "203.0.113.9"),
        (" 203.0.113.9 ,, ", "203.0.113.9"),
        ("10.0.0.2, 127.0.0.1", "10.0.0.2"),  # every entry trusted: the left-most
        ("2001:db8::1", "2001:db8::1"),
        ("unknown", "unknown"),  # taken as written, as uvicorn does
        ("", None),
        (" , ", None),
    ],
)
def test_forwarded_client_is_the_right_most_untrusted_entry(value: str, client: str | None) -> None:
    assert forwarded_client(value, TRUSTED) == client


@pytest.mark.parametrize(
    ("root", "path", "expected"),
    [
        ("/app", "/app/x", ("/app", "/x")),  # the front end passed the whole path
        ("/app/", "/app/x", ("/app", "/x")),
        ("/app", "/app", ("/app", "")),
        ("/app", "/x", ("/app", "/x")),  # the front end stripped the prefix
        ("/app", "/application", ("/app", "/application")),  # not under /app
        ("/app", "/app-x/y", ("/app", "/app-x/y")),
        ("/", "/x", ("", "/x")),
        ("", "/x", ("", "/x")),
    ],
)
def test_mount_is_one_rule_for_text_and_bytes(
    root: str, path: str, expected: tuple[str, str]
) -> None:
    assert mount(root, path) == expected
    assert mount(root.encode(), path.encode()) == (expected[0].encode(), expected[1].encode())
