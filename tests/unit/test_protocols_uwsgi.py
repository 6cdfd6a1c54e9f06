"""Unit tests of the sans-IO uWSGI parser, over every shared capture and synthetic packets."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from monoceros.protocols.errors import (
    InvalidChunkedBody,
    InvalidUWSGIHeader,
    InvalidVars,
    MissingChunkedBody,
    ProtocolError,
    TruncatedPacket,
    UnsupportedModifier,
    VarsTooLarge,
)
from monoceros.protocols.uwsgi import (
    MAX_VARS_SIZE,
    NEED_DATA,
    PONG,
    Data,
    EndOfMessage,
    Ping,
    UwsgiParser,
    UwsgiRequest,
    parse_head,
    truncated_head,
    url_scheme,
)

from unit_support import encode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "uwsgi-packets"
MISSING = "<uwsgi captures folder missing>"


def capture_names() -> list[str]:
    """Every .bin capture, or one placeholder that makes the tests fail when the folder is gone."""
    if not FIXTURES.is_dir():
        return [MISSING]
    return sorted(p.name for p in FIXTURES.glob("*.bin"))


def load(name: str) -> bytes:
    """Bytes of one capture; fail (never skip) with a clear message when the folder is absent."""
    if not FIXTURES.is_dir():
        pytest.fail(
            f"uwsgi captures not found: expected the folder {FIXTURES} "
            "(tests/fixtures/uwsgi-packets, copied from the shared captures)"
        )
    return (FIXTURES / name).read_bytes()


def packet(*pairs: tuple[str, str], modifier1: int = 0, body: bytes = b"") -> bytes:
    """Build a packet from str pairs (latin-1), with a GET method unless one is given."""
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
    if not any(k == b"REQUEST_METHOD" for k, _ in raw):
        raw.insert(0, (b"REQUEST_METHOD", b"GET"))
    return encode(raw, modifier1=modifier1, body=body)


@dataclass
class Outcome:
    """Everything a parser produced for one input, with Data events coalesced."""

    head: UwsgiRequest | Ping | None = None
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False
    waiting: bool = False
    error: ProtocolError | None = None
    kinds: list[str] = field(default_factory=list)

    def same_result(self) -> tuple[object, ...]:
        """What must not depend on how the bytes were split."""
        err = None if self.error is None else (type(self.error), self.error.reason)
        return (self.head, bytes(self.body), self.complete, self.waiting, err)


def pull(parser: UwsgiParser, out: Outcome) -> bool:
    """Pull events until NEED_DATA or the end; False once nothing more can come."""
    for _ in range(1_000_000):
        event = parser.next_event()
        if event is NEED_DATA:
            return True
        if isinstance(event, Data):
            assert event.data, "Data events are never empty"
            out.body += event.data
            if not out.kinds or out.kinds[-1] != "Data":
                out.kinds.append("Data")
            continue
        out.kinds.append(type(event).__name__)
        if isinstance(event, (UwsgiRequest, Ping)):
            assert out.head is None, "a second head"
            out.head = event
            if isinstance(event, Ping):
                out.complete = True
                return False
            continue
        assert isinstance(event, EndOfMessage)
        out.complete = True
        return False
    raise AssertionError("event loop did not settle")


def run(pieces: list[bytes], *, eof: bool = True, max_vars_size: int = MAX_VARS_SIZE) -> Outcome:
    """Feed ``pieces`` one by one (pulling events after each), then EOF if asked."""
    parser = UwsgiParser(max_vars_size=max_vars_size)
    out = Outcome()
    try:
        more = True
        for piece in pieces:
            if not piece:
                continue  # b"" would mean EOF
            parser.receive_data(piece)
            more = pull(parser, out)
            if not more:
                break
        if more:
            if eof:
                parser.receive_data(b"")
                pull(parser, out)
            else:
                out.waiting = True
    except ProtocolError as exc:
        out.error = exc
    return out


def byte_at_a_time(data: bytes) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """``run(pieces).same_result()`` and ``run(pieces, eof=False).same_result()`` for ``data``
    fed one byte at a time, from one pass: the run without EOF is the other run up to its EOF
    (the same calls), so its result is taken there (a 1 MiB capture is a million calls)."""
    parser = UwsgiParser(max_vars_size=MAX_VARS_SIZE)
    out = Outcome()
    try:
        for i in range(len(data)):
            parser.receive_data(data[i : i + 1])
            if not pull(parser, out):
                return out.same_result(), out.same_result()
    except ProtocolError as exc:
        out.error = exc
        return out.same_result(), out.same_result()
    without_eof = replace(out, waiting=True).same_result()
    try:
        parser.receive_data(b"")
        pull(parser, out)
    except ProtocolError as exc:
        out.error = exc
    return out.same_result(), without_eof


def whole(data: bytes, **kwargs: int) -> Outcome:
    """Feed ``data`` in one piece, then EOF."""
    return run([data], **kwargs)  # type: ignore[arg-type]


def head_of(data: bytes) -> UwsgiRequest:
    """The request head of a packet parsed with parse_head."""
    result = parse_head(data)
    assert result is not None
    head, _ = result
    assert isinstance(head, UwsgiRequest)
    return head


def error_of(data: bytes, **kwargs: int) -> ProtocolError:
    """The error raised for a packet fed whole, then EOF."""
    out = whole(data, **kwargs)
    assert out.error is not None, f"no error; got {out.head!r}"
    return out.error


# -- every capture ---------------------------------------------------------------------------

# name: (modifier1, datasize, body framing, bytes after the vars block), from the README table.
# framing: an int is the expected content_length; "chunked" a chunk-framed body; "error" a
# malformed packet.
EXPECTED: dict[str, tuple[int, int, int | str, int]] = {
    "apache-get-percent-utf8-noslash.bin": (0, 733, 0, 0),
    "apache-get-query.bin": (0, 705, 0, 0),
    "apache-get-raw-utf8-socket.bin": (0, 641, 0, 0),
    "apache-head.bin": (0, 665, 0, 0),
    "apache-header-repeated-underscore.bin": (0, 719, 0, 0),
    "apache-post-1mib.bin": (0, 720, 1048576, 1048576),
    "apache-post-form100.bin": (0, 728, 100, 100),
    "apache-prefix.bin": (0, 697, 0, 0),
    "apache-setenv-https.bin": (0, 684, 0, 0),
    "apache-strip-prefix.bin": (0, 688, 0, 0),
    "nginx-get-absolute-form.bin": (0, 329, 0, 0),
    "nginx-get-dotdot-slashes.bin": (0, 351, 0, 0),
    "nginx-get-http10-nohost.bin": (0, 291, 0, 0),
    "nginx-get-percent-utf8.bin": (0, 416, 0, 0),
    "nginx-get-query.bin": (0, 382, 0, 0),
    "nginx-get-raw-utf8-socket.bin": (0, 334, 0, 0),
    "nginx-get-raw-utf8.bin": (0, 382, 0, 0),
    "nginx-head.bin": (0, 349, 0, 0),
    "nginx-header-repeated.bin": (0, 407, 0, 0),
    "nginx-header-underscore-off.bin": (0, 357, 0, 0),
    "nginx-header-underscore-on.bin": (0, 443, 0, 0),
    "nginx-headers-100.bin": (0, 3125, 0, 0),
    "nginx-http10.bin": (0, 339, 0, 0),
    "nginx-https-on.bin": (0, 365, 0, 0),
    "nginx-override-params.bin": (0, 380, 0, 0),
    "nginx-post-1mib-nobuf.bin": (0, 458, 1048576, 1048576),
    "nginx-post-1mib.bin": (0, 446, 1048576, 1048576),
    "nginx-post-chunked-1mib-nobuf.bin": (0, 475, 1048576, 1048576),
    "nginx-post-chunked-buffered.bin": (0, 472, 5000, 5000),
    "nginx-post-chunked-nobuf.bin": (0, 484, 5000, 5000),
    "nginx-post-empty.bin": (0, 344, 0, 0),
    "nginx-post-expect-100.bin": (0, 491, 5000, 5000),
    "nginx-post-form100.bin": (0, 458, 100, 100),
    "nginx-prefix-scriptname-modifier30.bin": (30, 392, 0, 0),
    "nginx-prefix-scriptname.bin": (0, 395, 0, 0),
    "nginx-vars-near-64k.bin": (0, 65371, 0, 0),
    "nginx-websocket-upgrade.bin": (0, 432, 0, 0),
    "uwsgi_curl-get-headers.bin": (0, 205, 0, 0),
    "uwsgi_curl-get-query.bin": (0, 201, 0, 0),
    "uwsgi_curl-get-utf8.bin": (0, 170, "error", 0),
    "uwsgi_curl-post-data.bin": (0, 169, 0, 7),
    "uwsgi_proxy-get-query.bin": (0, 397, 0, 0),
    "uwsgi_proxy-post-form100.bin": (0, 405, 100, 100),
    "uwsgirouter-get-localport.bin": (0, 290, 0, 0),
    "uwsgirouter-get-percent-utf8.bin": (0, 369, 0, 0),
    "uwsgirouter-get-query.bin": (0, 335, 0, 0),
    "uwsgirouter-get-raw-utf8-socket.bin": (0, 281, 0, 0),
    "uwsgirouter-head.bin": (0, 302, 0, 0),
    "uwsgirouter-header-repeated-underscore.bin": (0, 381, 0, 0),
    "uwsgirouter-post-1mib.bin": (0, 358, 1048576, 1048576),
    "uwsgirouter-post-chunked-http-chunked-input.bin": (0, 383, "chunked", 5013),
    "uwsgirouter-post-chunked.bin": (0, 383, "chunked", 0),
    "uwsgirouter-post-form100.bin": (0, 365, 100, 100),
}

CHUNKED_PAYLOAD_LEN = 5000


def test_every_capture_has_an_expectation() -> None:
    """The shared folder holds exactly the captures this file knows (none silently untested)."""
    names = capture_names()
    assert names != [MISSING], f"uwsgi captures not found in {FIXTURES}"
    assert set(names) == set(EXPECTED)


@pytest.mark.parametrize("name", capture_names())
def test_capture_whole(name: str) -> None:
    """Each capture fed whole then EOF: head fields, body framing and body bytes as expected."""
    data = load(name)
    m1, size, framing, after = EXPECTED[name]
    assert len(data) == 4 + size + after
    out = whole(data)
    if framing == "error":
        assert type(out.error) is InvalidVars
        assert out.head is None
        return
    head = out.head
    assert isinstance(head, UwsgiRequest)
    assert head.modifier1 == m1 and head.modifier2 == 0
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in head.environ.items())
    assert "HTTP_CONTENT_LENGTH" not in head.environ
    assert "HTTP_CONTENT_TYPE" not in head.environ
    if framing == "chunked":
        assert head.chunked
        if after:  # --http-chunked-input: de-chunked to the 5000-byte payload
            assert out.error is None and out.complete
            assert len(out.body) == CHUNKED_PAYLOAD_LEN
        else:  # the router dropped the body: EOF while waiting for a chunk
            assert type(out.error) is TruncatedPacket
            assert "truncated chunked body after 0" in out.error.reason
        return
    assert out.error is None and out.complete
    assert not head.chunked
    assert head.content_length == framing
    assert out.body == data[4 + size : 4 + size + framing]
    assert out.kinds == (
        ["UwsgiRequest", "Data", "EndOfMessage"] if framing else ["UwsgiRequest", "EndOfMessage"]
    )


@pytest.mark.parametrize("name", capture_names())
def test_capture_parse_head_matches_parser(name: str) -> None:
    """parse_head on a capture reports the bytes it used and the same head as the parser."""
    data = load(name)
    _, size, framing, _ = EXPECTED[name]
    if framing == "error":
        with pytest.raises(InvalidVars):
            parse_head(data)
        return
    result = parse_head(bytearray(data))
    assert result is not None
    head, used = result
    assert used == 4 + size
    assert head == whole(data).head
    assert parse_head(data[: used - 1]) is None


@pytest.mark.parametrize("name", capture_names())
def test_capture_byte_by_byte(name: str) -> None:
    """One byte at a time gives the same events as the whole capture at once."""
    data = load(name)
    with_eof, without_eof = byte_at_a_time(data)
    assert with_eof == whole(data).same_result()
    assert without_eof == run([data], eof=False).same_result()


def truncation_points(data: bytes, used: int) -> list[int]:
    """Every cut up to the end of the head and of bodies up to 64 KiB; 1 MiB bodies sampled."""
    n = len(data)
    if n - used <= 65536:
        return list(range(n + 1))
    body = set(range(used, used + 512)) | set(range(n - 512, n + 1))
    body |= set(range(used, n, 997))
    return list(range(used)) + sorted(body)


@pytest.mark.parametrize("name", capture_names())
def test_capture_every_truncation(name: str) -> None:
    """A capture cut anywhere then EOF: TruncatedPacket (or, for a malformed capture whose head
    is in, InvalidVars), or the full result once complete."""
    data = load(name)
    _, size, framing, after = EXPECTED[name]
    used = 4 + size
    full = whole(data).same_result()
    # The message is complete once the head and its framed body are in.
    if framing == "error":
        complete_at = len(data) + 1  # never
    elif framing == "chunked":
        complete_at = len(data) if after else len(data) + 1
    else:
        assert isinstance(framing, int)
        complete_at = used + framing
    for cut in truncation_points(data, used):
        out = whole(data[:cut])
        if cut >= complete_at:
            assert out.same_result() == full, cut
        else:
            kind = InvalidVars if framing == "error" and cut >= used else TruncatedPacket
            assert type(out.error) is kind, (cut, out)
            assert ("truncated" in out.error.reason) is (kind is TruncatedPacket), (cut, out)


def continued(data: bytes, with_head: int, piece: int = 65536) -> Outcome:
    """What the sync and gthread workers do: :func:`parse_head`, then a parser continued with
    :meth:`UwsgiParser.after_head` given ``with_head`` bytes, then the rest in pieces, then EOF."""
    result = parse_head(data)
    assert result is not None
    head, used = result
    assert isinstance(head, UwsgiRequest)
    out = Outcome(head=head, kinds=["UwsgiRequest"])
    parser = UwsgiParser.after_head(head, data[used : used + with_head])
    rest = data[used + with_head :]
    try:
        more = pull(parser, out)
        for i in range(0, len(rest), piece):
            if not more:
                break
            parser.receive_data(rest[i : i + piece])
            more = pull(parser, out)
        if more:
            parser.receive_data(b"")
            pull(parser, out)
    except ProtocolError as exc:
        out.error = exc
    return out


def well_formed_captures() -> list[str]:
    """The captures whose head parses (all but the malformed ones)."""
    return [n for n in capture_names() if n == MISSING or EXPECTED[n][2] != "error"]


@pytest.mark.parametrize("name", well_formed_captures())
def test_capture_after_head_matches_parser(name: str) -> None:
    """A parser continued after parse_head gives the events of one fed from the first byte,
    whatever part of the body came with the head and however the rest is cut."""
    data = load(name)
    used = 4 + EXPECTED[name][1]
    full = whole(data)
    for with_head in sorted({0, 1, 100, len(data) - used}):
        for piece in (1 << 16, 7):
            if piece == 7 and len(data) > 100_000:
                continue  # 1 MiB in 7-byte pieces is slow; the 64 KiB pieces cover them
            out = continued(data, with_head, piece)
            assert out.same_result() == full.same_result(), (with_head, piece)
            assert out.kinds == full.kinds, (with_head, piece)


@pytest.mark.parametrize("name", well_formed_captures())
def test_capture_after_head_truncated_anywhere(name: str) -> None:
    """Cut anywhere after the head then EOF: the continued parser says what the parser fed
    from the first byte says (the same TruncatedPacket, reason included)."""
    data = load(name)
    used = 4 + EXPECTED[name][1]
    for cut in truncation_points(data, used):
        if cut >= used:
            cut_data = data[:cut]
            assert continued(cut_data, cut - used).same_result() == whole(cut_data).same_result()


@pytest.mark.parametrize("name", capture_names())
def test_truncated_head_matches_parser(name: str) -> None:
    """truncated_head words a head cut anywhere as the parser does at EOF."""
    data = load(name)
    used = 4 + EXPECTED[name][1]
    for cut in range(0, used, max(1, used // 400)):
        err = truncated_head(data[:cut])
        parsed = whole(data[:cut]).error
        assert type(err) is TruncatedPacket and type(parsed) is TruncatedPacket
        assert err.reason == parsed.reason


# -- what the captures must say --------------------------------------------------------------


def test_nginx_get_query_baseline() -> None:
    """Empty CONTENT_* vars are kept as sent; QUERY_STRING raw; content_length 0."""
    head = head_of(load("nginx-get-query.bin"))
    env = head.environ
    assert env["CONTENT_LENGTH"] == "" and env["CONTENT_TYPE"] == ""
    assert head.content_length == 0 and not head.chunked
    assert env["QUERY_STRING"] == "a=1&b=two&a=3"
    assert env["REQUEST_URI"] == "/hello/world?a=1&b=two&a=3"
    assert env["PATH_INFO"] == "/hello/world"
    assert env["HTTP_HOST"] == "127.0.0.1"
    assert "SCRIPT_NAME" not in env  # absent vars stay absent
    assert len(env) == 16
    assert url_scheme(env) == "http"


def test_percent_utf8_path_is_not_decoded_again() -> None:
    """PATH_INFO arrives decoded once (latin-1 str of the UTF-8 bytes); URI and query stay raw."""
    for name in ("nginx-get-percent-utf8.bin", "uwsgirouter-get-percent-utf8.bin"):
        env = head_of(load(name)).environ
        assert env["PATH_INFO"] == "/caf\xc3\xa9/a/b/~user/x y"
        assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café/a/b/~user/x y"
        assert env["REQUEST_URI"] == "/caf%C3%A9/a%2Fb/%7Euser/x%20y?q=caf%C3%A9&x=%20"
        assert env["QUERY_STRING"] == "q=caf%C3%A9&x=%20"


def test_raw_utf8_bytes_pass_as_latin1() -> None:
    """Raw UTF-8 bytes in the request line arrive unchanged in all three path vars."""
    for name in (
        "nginx-get-raw-utf8-socket.bin",
        "apache-get-raw-utf8-socket.bin",
        "uwsgirouter-get-raw-utf8-socket.bin",
    ):
        env = head_of(load(name)).environ
        assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café/日本"
        assert env["QUERY_STRING"].encode("latin-1").decode("utf-8") == "q=é"
        assert env["REQUEST_URI"].encode("latin-1").decode("utf-8") == "/café/日本?q=é"
    env = head_of(load("nginx-get-raw-utf8.bin")).environ
    assert env["REQUEST_URI"] == "/caf%c3%a9/%e6%97%a5%e6%9c%ac?q=\xc3\xa9"


def test_nginx_normalised_path_kept() -> None:
    """nginx's normalised PATH_INFO is kept; REQUEST_URI holds the raw target."""
    env = head_of(load("nginx-get-dotdot-slashes.bin")).environ
    assert env["PATH_INFO"] == "/a/b/d"
    assert env["REQUEST_URI"] == "/a//b/./c/../d"


@pytest.mark.parametrize(
    ("name", "m1", "script_name"),
    [
        ("nginx-prefix-scriptname-modifier30.bin", 30, "/prefix"),
        ("nginx-prefix-scriptname.bin", 0, "/prefix2"),
    ],
)
def test_script_name_stripped_from_path_info(name: str, m1: int, script_name: str) -> None:
    """SCRIPT_NAME is removed from the front of PATH_INFO whatever modifier1 says."""
    head = head_of(load(name))
    assert head.modifier1 == m1
    assert head.environ["SCRIPT_NAME"] == script_name
    assert head.environ["PATH_INFO"] == "/app/path"
    assert head.environ["REQUEST_URI"] == f"{script_name}/app/path?z=9"


def test_apache_mounts_left_alone() -> None:
    """Apache's own split is kept; an empty SCRIPT_NAME strips nothing."""
    env = head_of(load("apache-strip-prefix.bin")).environ
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/strip", "/app/path")
    env = head_of(load("apache-prefix.bin")).environ
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/prefix/app/path")


def test_nginx_repeated_headers_joined() -> None:
    """nginx 1.22 sends one var per header line: joined with ', ' and '; ' for cookies."""
    env = head_of(load("nginx-header-repeated.bin")).environ
    assert env["HTTP_X_A"] == "one, two"
    assert env["HTTP_COOKIE"] == "c1=1; c2=2"


@pytest.mark.parametrize(
    "name", ["apache-header-repeated-underscore.bin", "uwsgirouter-header-repeated-underscore.bin"]
)
def test_already_joined_headers_pass_through(name: str) -> None:
    """Apache and the router join repeats themselves: their values pass through unchanged."""
    env = head_of(load(name)).environ
    assert env["HTTP_X_A"] == "one, two"
    assert env["HTTP_COOKIE"] == "c1=1, c2=2"
    assert env["HTTP_X_DASH_ED"] == "d1"


def test_underscore_duplicate_joined_not_last_wins() -> None:
    """X-Forwarded-For and X_Forwarded_For collide: both values are kept, joined."""
    env = head_of(load("nginx-header-underscore-on.bin")).environ
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 7.7.7.7"
    assert env["HTTP_X_UNDER_SCORE"] == "u1"
    env = head_of(load("nginx-header-underscore-off.bin")).environ
    assert "HTTP_X_UNDER_SCORE" not in env and env["HTTP_X_DASH_ED"] == "d1"


@pytest.mark.parametrize(
    "name",
    [
        "nginx-post-form100.bin",
        "nginx-post-1mib.bin",
        "nginx-post-chunked-buffered.bin",
        "nginx-post-expect-100.bin",
    ],
)
def test_http_content_copies_dropped(name: str) -> None:
    """nginx's HTTP_CONTENT_* copies are dropped; CONTENT_LENGTH/CONTENT_TYPE are kept."""
    data = load(name)
    assert b"HTTP_CONTENT_TYPE" in data
    env = head_of(data).environ
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env
    assert env["CONTENT_LENGTH"].isdigit()
    assert env["CONTENT_TYPE"]


def test_form_body_delivered() -> None:
    """A 100-byte form body comes out as Data then EndOfMessage."""
    out = whole(load("nginx-post-form100.bin"))
    assert out.body == b"a=1&b=" + b"x" * 94
    assert out.kinds == ["UwsgiRequest", "Data", "EndOfMessage"]


def test_post_with_empty_content_length_has_no_body() -> None:
    """POST with CONTENT_LENGTH='' ends right after the head: nothing to wait for."""
    out = run([load("nginx-post-empty.bin")], eof=False)
    assert isinstance(out.head, UwsgiRequest)
    assert out.head.environ["REQUEST_METHOD"] == "POST"
    assert out.head.environ["CONTENT_LENGTH"] == ""
    assert out.complete and not out.waiting and out.body == b""


def test_vars_block_near_64k_accepted() -> None:
    """nginx's largest vars block (65371 bytes) parses with the default limit."""
    data = load("nginx-vars-near-64k.bin")
    env = head_of(data).environ
    assert env["HTTP_X_BIG_1"] == "a" * 40000
    assert env["HTTP_X_BIG_2"] == "b" * 25000
    err = error_of(data, max_vars_size=65370)
    assert type(err) is VarsTooLarge and err.status == 400
    assert "65371" in err.reason and "65370" in err.reason
    with pytest.raises(VarsTooLarge):
        parse_head(data[:4], 4096)  # rejected from the 4-byte header alone


def test_nginx_chunked_upload_framed_by_content_length() -> None:
    """nginx de-chunks and still sends the TE var: CONTENT_LENGTH frames the body."""
    data = load("nginx-post-chunked-buffered.bin")
    out = whole(data)
    assert isinstance(out.head, UwsgiRequest)
    assert out.head.environ["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert not out.head.chunked and out.head.content_length == 5000
    assert out.body == data[-5000:]


def test_router_chunked_input_dechunked() -> None:
    """The router's raw chunk stream is de-chunked to the same 5000 bytes nginx delivered."""
    out = whole(load("uwsgirouter-post-chunked-http-chunked-input.bin"))
    assert isinstance(out.head, UwsgiRequest)
    assert out.head.chunked and "CONTENT_LENGTH" not in out.head.environ
    assert out.complete and out.error is None
    assert out.body == load("nginx-post-chunked-buffered.bin")[-5000:]


def test_router_chunked_without_body_waits() -> None:
    """The default router sends the TE var but no body: the parser waits, it does not end."""
    parser = UwsgiParser()
    parser.receive_data(load("uwsgirouter-post-chunked.bin"))
    head = parser.next_event()
    assert isinstance(head, UwsgiRequest) and head.chunked
    assert parser.body_remaining is None
    for _ in range(3):
        assert parser.next_event() is NEED_DATA
    parser.receive_data(b"")
    with pytest.raises(TruncatedPacket, match="truncated chunked body after 0 data bytes"):
        parser.next_event()


def test_malformed_uwsgi_curl_rejected_with_offset() -> None:
    """uwsgi_curl counts characters, not bytes: the key length overrun names offset 47."""
    err = error_of(load("uwsgi_curl-get-utf8.bin"))
    assert type(err) is InvalidVars and err.status == 400
    assert err.reason == "key length 3753 overruns the vars block at offset 47 (block is 170 bytes)"


def test_uwsgi_curl_body_without_content_length_left_unread() -> None:
    """No CONTENT_LENGTH means no body: the 7 trailing bytes are never read as body."""
    data = load("uwsgi_curl-post-data.bin")
    parser = UwsgiParser()
    parser.receive_data(data)
    head = parser.next_event()
    assert isinstance(head, UwsgiRequest) and head.content_length == 0
    assert parser.next_event() == EndOfMessage()
    assert parser.trailing_data == b"a=1&b=2"


def test_minimal_and_odd_clients() -> None:
    """uwsgi_curl's minimal packet and its unconverted header name pass through."""
    env = head_of(load("uwsgi_curl-get-query.bin")).environ
    assert len(env) == 8 and "REMOTE_ADDR" not in env
    env = head_of(load("uwsgi_curl-get-headers.bin")).environ
    assert env["HTTP_X-CUSTOM-HEADER"] == "v"


def test_scheme_from_captures() -> None:
    """HTTPS=on makes https even though REQUEST_SCHEME says http."""
    for name in ("nginx-https-on.bin", "apache-setenv-https.bin"):
        env = head_of(load(name)).environ
        assert env["REQUEST_SCHEME"] == "http"
        assert url_scheme(env) == "https"
    assert url_scheme(head_of(load("uwsgirouter-get-query.bin")).environ) == "http"


def test_websocket_upgrade_vars() -> None:
    """An upgrade request is an ordinary head with its headers as vars."""
    head = head_of(load("nginx-websocket-upgrade.bin"))
    assert head.environ["HTTP_UPGRADE"] == "websocket"
    assert head.environ["HTTP_CONNECTION"] == "Upgrade"
    assert head.environ["HTTP_SEC_WEBSOCKET_VERSION"] == "13"


def test_router_vars_pass_through() -> None:
    """Router-specific vars (and its byte-swapped REMOTE_PORT) are passed as sent."""
    env = head_of(load("uwsgirouter-get-localport.bin")).environ
    assert env["UWSGI_ROUTER"] == "http"
    assert env["REMOTE_PORT"] == "16796"
    assert env["SCRIPT_NAME"] == ""


# -- header and modifiers ----------------------------------------------------------------------


def test_ping() -> None:
    """modifier1 100, modifier2 0, datasize 0 is a ping; PONG is the 4-byte reply."""
    assert PONG == b"\x64\x00\x00\x01"
    assert parse_head(b"\x64\x00\x00\x00trailing") == (Ping(), 4)
    parser = UwsgiParser()
    parser.receive_data(b"\x64\x00")
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"\x00\x00")
    assert parser.next_event() == Ping()
    assert parser.head == Ping()
    with pytest.raises(RuntimeError):
        parser.next_event()


def test_pong_and_ping_with_vars_rejected() -> None:
    """A pong (modifier2 1) is not served; a ping with vars is malformed."""
    with pytest.raises(UnsupportedModifier, match="modifier2 1"):
        parse_head(PONG)
    with pytest.raises(InvalidVars, match="ping"):
        parse_head(b"\x64\x05\x00\x00")


@pytest.mark.parametrize(("m1", "letter"), [(71, "G"), (72, "H"), (80, "P")])
def test_http_on_uwsgi_port(m1: int, letter: str) -> None:
    """'G', 'H', 'P' as modifier1 is HTTP sent to a uwsgi port: 501 with a hint, at 4 bytes."""
    with pytest.raises(UnsupportedModifier) as info:
        parse_head(bytes([m1]) + b"ET ")
    assert info.value.status == 501
    assert str(m1) in info.value.reason and letter in info.value.reason
    assert "looks like HTTP sent to a uwsgi port" in info.value.reason


def test_http_request_rejected_before_its_fake_block_arrives() -> None:
    """A real HTTP request fails as soon as 4 bytes are in, not after 21573 more."""
    parser = UwsgiParser()
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(UnsupportedModifier, match="71"):
        parser.next_event()


@pytest.mark.parametrize("m1", [1, 5, 9, 17, 22, 31, 99, 101, 255])
def test_other_modifiers_unsupported(m1: int) -> None:
    """Every other modifier1 is refused with 501 and its value in the reason."""
    data = packet(("PATH_INFO", "/"), modifier1=m1)
    err = error_of(data)
    assert type(err) is UnsupportedModifier and err.status == 501
    assert f"modifier1 {m1} " in err.reason


def test_modifier2_passed_through() -> None:
    """modifier2 of a request is reported, not interpreted."""
    data = bytearray(packet(("PATH_INFO", "/")))
    data[3] = 7
    assert head_of(bytes(data)).modifier2 == 7


def test_zero_length_vars_block() -> None:
    """A request with datasize 0 is malformed."""
    with pytest.raises(InvalidVars, match="zero-length vars block"):
        parse_head(b"\x00\x00\x00\x00")


def test_vars_block_over_limit() -> None:
    """A vars block larger than max_vars_size is rejected from the header alone."""
    data = packet(("PATH_INFO", "/" * 100))
    size = data[1] | data[2] << 8
    with pytest.raises(VarsTooLarge, match=f"vars block of {size} bytes exceeds"):
        parse_head(data[:4], size - 1)
    assert parse_head(data, size) is not None
    with pytest.raises(ValueError):
        UwsgiParser(max_vars_size=0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated header after 0 of 4 bytes"),
        (b"\x00\x10", "truncated header after 2 of 4 bytes"),
        (b"\x00\x10\x00\x00abc", "truncated vars block after 3 of 16 bytes"),
    ],
)
def test_truncated_head_at_eof(data: bytes, reason: str) -> None:
    """EOF inside the header or the vars block names how much arrived."""
    err = error_of(data)
    assert type(err) is TruncatedPacket and err.status == 400
    assert err.reason == reason


def test_truncated_body_at_eof() -> None:
    """EOF inside a CONTENT_LENGTH body names how much arrived."""
    data = packet(("CONTENT_LENGTH", "10"), body=b"abc")
    err = error_of(data)
    assert type(err) is TruncatedPacket
    assert err.reason == "truncated body after 3 of 10 bytes"


# -- vars block errors -------------------------------------------------------------------------


def raw_block(block: bytes) -> bytes:
    """A packet around a hand-made vars block."""
    return struct.pack("<BHB", 0, len(block), 0) + block


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (b"\x05", "truncated key length at offset 0 of the vars block"),
        (b"\x01\x00A\x01\x00B\x07", "truncated key length at offset 6 of the vars block"),
        (b"\x09\x00ABC", "key length 9 overruns the vars block at offset 2 (block is 5 bytes)"),
        (b"\x03\x00ABC", "truncated value length at offset 5 of the vars block (key 'ABC')"),
        (b"\x03\x00ABC\x00", "truncated value length at offset 5 of the vars block (key 'ABC')"),
        (
            b"\x03\x00ABC\x05\x00xy",
            "value length 5 of key 'ABC' overruns the vars block at offset 7 (block is 9 bytes)",
        ),
        (b"\x00\x00\x01\x00x", "empty key at offset 2 of the vars block"),
        (b"\x01\x00A\x00\x00\x00\x00\x00\x00", "empty key at offset 7 of the vars block"),
    ],
)
def test_vars_framing_errors(block: bytes, reason: str) -> None:
    """Every framing error of the vars block is reported with its offset."""
    with pytest.raises(InvalidVars) as info:
        parse_head(raw_block(block))
    assert info.value.reason == reason


@pytest.mark.parametrize(("char", "label"), [("\r", "CR"), ("\n", "LF"), ("\x00", "NUL")])
def test_forbidden_characters(char: str, label: str) -> None:
    """CR, LF and NUL are refused in keys and in values, escaped in the reason."""
    with pytest.raises(InvalidVars) as info:
        parse_head(packet(("HTTP_X" + char, "v")))
    # REQUEST_METHOD=GET fills offsets 0-20; the key starts at 23
    assert info.value.reason == f"key {'HTTP_X' + char!r} contains {label} at offset 29"
    assert char not in info.value.reason
    with pytest.raises(InvalidVars) as info:
        parse_head(packet(("HTTP_X", "a" + char + "b")))
    assert info.value.reason == f"value of 'HTTP_X' contains {label} at offset 32"
    # the same value repeated takes the careful path too
    with pytest.raises(InvalidVars, match=label):
        parse_head(packet(("HTTP_X", "a"), ("HTTP_X", char)))


def test_forbidden_key_reason_is_escaped() -> None:
    """A key with CR is shown escaped, so the log line stays one line."""
    with pytest.raises(InvalidVars) as info:
        parse_head(packet(("X\rY", "v")))
    assert info.value.reason == "key 'X\\rY' contains CR at offset 24"


def test_long_peer_text_is_cut_in_reasons() -> None:
    """Peer strings quoted in a reason are cut short."""
    with pytest.raises(InvalidVars) as info:
        parse_head(packet(("REQUEST_METHOD", "G E" * 100)))
    assert len(info.value.reason) < 100 and "..." in info.value.reason


@pytest.mark.parametrize("method", ["", "GE T", "GET\t", "G\x7fT", "GÉT", "(GET)", "GET/"])
def test_method_must_be_a_token(method: str) -> None:
    """REQUEST_METHOD must be an RFC 9110 token."""
    with pytest.raises(InvalidVars, match=r"REQUEST_METHOD .* is not an HTTP token"):
        parse_head(packet(("REQUEST_METHOD", method)))


@pytest.mark.parametrize("method", ["GET", "PROPFIND", "M-SEARCH", "x!#$%&'*+.^_`|~9"])
def test_method_tokens_accepted(method: str) -> None:
    """Any token is a method: the application decides what to serve."""
    assert head_of(packet(("REQUEST_METHOD", method))).environ["REQUEST_METHOD"] == method


def test_missing_method() -> None:
    """A request without REQUEST_METHOD is malformed."""
    with pytest.raises(InvalidVars, match="missing REQUEST_METHOD"):
        parse_head(encode([(b"PATH_INFO", b"/")]))


@pytest.mark.parametrize(
    "value", ["12a", "-1", "+5", " 5", "5 ", "1_0", "0x10", "\xb2", "1.0", "1e3", "\xbd"]
)
def test_content_length_must_be_plain_decimal(value: str) -> None:
    """Only ASCII digits make a CONTENT_LENGTH (int() would take several of these)."""
    with pytest.raises(InvalidVars, match=r"CONTENT_LENGTH .* is not a decimal number"):
        parse_head(packet(("CONTENT_LENGTH", value)))


def test_content_length_with_too_many_digits() -> None:
    """A huge digit string is a protocol error, never a ValueError from int()."""
    with pytest.raises(InvalidVars, match="too large"):
        parse_head(packet(("CONTENT_LENGTH", "9" * 5000)))


@pytest.mark.parametrize(("value", "length"), [("", 0), ("0", 0), ("007", 7), ("123456", 123456)])
def test_content_length_values(value: str, length: int) -> None:
    """Empty means 0; leading zeros are still decimal."""
    head = head_of(packet(("CONTENT_LENGTH", value)))
    assert head.content_length == length and head.environ["CONTENT_LENGTH"] == value


# -- environ mapping ---------------------------------------------------------------------------


def test_repeated_keys_merge_rules() -> None:
    """HTTP_* repeats join; non-HTTP repeats keep the last value; identical ones one value."""
    env = head_of(
        packet(
            ("HTTP_X", "a"),
            ("PATH_INFO", "/first"),
            ("HTTP_X", "a"),
            ("SERVER_NAME", "s"),
            ("HTTP_COOKIE", "k=1"),
            ("HTTP_X", ""),
            ("PATH_INFO", "/second"),
            ("SERVER_NAME", "s"),
            ("HTTP_COOKIE", "j=2"),
        )
    ).environ
    assert env["HTTP_X"] == "a, a, "
    assert env["HTTP_COOKIE"] == "k=1; j=2"
    assert env["PATH_INFO"] == "/second"
    assert env["SERVER_NAME"] == "s"
    assert list(env) == ["REQUEST_METHOD", "HTTP_X", "PATH_INFO", "SERVER_NAME", "HTTP_COOKIE"]


def test_repeated_content_copies_still_dropped() -> None:
    """HTTP_CONTENT_* are dropped even when repeated (the careful path)."""
    env = head_of(
        packet(
            ("HTTP_CONTENT_TYPE", "a"),
            ("HTTP_CONTENT_TYPE", "b"),
            ("HTTP_CONTENT_LENGTH", "1"),
            ("CONTENT_TYPE", "text/plain"),
        )
    ).environ
    assert env == {"REQUEST_METHOD": "GET", "CONTENT_TYPE": "text/plain"}


@pytest.mark.parametrize(
    ("script_name", "path_info", "expected"),
    [
        ("/prefix", "/prefix/app", ("/prefix", "/app")),
        ("/prefix", "/prefix", ("/prefix", "")),
        ("/prefix", "/prefix/", ("/prefix", "/")),
        ("/prefix", "/prefixes", ("/prefix", "/prefixes")),
        ("/prefix", "/other/prefix/x", ("/prefix", "/other/prefix/x")),
        ("/prefix/", "/prefix/app", ("/prefix", "/app")),
        ("/prefix//", "/prefix", ("/prefix", "")),
        ("/", "/x", ("", "/x")),
        ("", "/x", ("", "/x")),
        ("/a/b", "/a/b/c", ("/a/b", "/c")),
        ("/caf\xc3\xa9", "/caf\xc3\xa9/x", ("/caf\xc3\xa9", "/x")),
    ],
)
def test_script_name_strip(script_name: str, path_info: str, expected: tuple[str, str]) -> None:
    """SCRIPT_NAME leaves PATH_INFO only at a '/' boundary; its trailing '/' is dropped."""
    for m1 in (0, 30):
        env = head_of(
            packet(("PATH_INFO", path_info), ("SCRIPT_NAME", script_name), modifier1=m1)
        ).environ
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == expected


def test_script_name_without_path_info() -> None:
    """SCRIPT_NAME alone is kept (minus a trailing slash); no PATH_INFO is invented."""
    env = head_of(packet(("SCRIPT_NAME", "/app/"))).environ
    assert env == {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/app"}


def test_path_info_never_decoded_again() -> None:
    """'%2561' stays '%2561' and raw bytes stay latin-1: nothing is percent-decoded."""
    env = head_of(
        packet(
            ("PATH_INFO", "/%2561dmin"),
            ("QUERY_STRING", "a=%20&b=+"),
            ("REQUEST_URI", "/%252561dmin?a=%20&b=+"),
        )
    ).environ
    assert env["PATH_INFO"] == "/%2561dmin"
    assert env["QUERY_STRING"] == "a=%20&b=+"
    assert env["REQUEST_URI"] == "/%252561dmin?a=%20&b=+"


def test_magic_vars_are_plain_strings() -> None:
    """Code-loading UWSGI_* vars pass through untouched; nothing acts on them."""
    pairs = [("UWSGI_FILE", "/tmp/x.py"), ("UWSGI_SCRIPT", "evil:app"), ("UWSGI_SETENV", "A=1")]
    env = head_of(packet(*pairs)).environ
    for key, value in pairs:
        assert env[key] == value


def test_all_latin1_bytes_decode_one_to_one() -> None:
    """Every byte except CR, LF and NUL maps to the code point of the same value."""
    raw = bytes(b for b in range(256) if b not in (0, 10, 13))
    head = head_of(encode([(b"REQUEST_METHOD", b"GET"), (b"HTTP_X", raw)]))
    assert head.environ["HTTP_X"].encode("latin-1") == raw


@pytest.mark.parametrize(
    ("env", "scheme"),
    [
        ({}, "http"),
        ({"HTTPS": "on"}, "https"),
        ({"HTTPS": "ON"}, "https"),
        ({"HTTPS": "1"}, "https"),
        ({"HTTPS": "Yes"}, "https"),
        ({"HTTPS": "off", "UWSGI_SCHEME": "https"}, "http"),
        ({"HTTPS": "", "REQUEST_SCHEME": "https"}, "https"),
        ({"HTTPS": "", "UWSGI_SCHEME": "", "REQUEST_SCHEME": "http"}, "http"),
        ({"HTTPS": "no", "REQUEST_SCHEME": "https"}, "http"),
        ({"UWSGI_SCHEME": "https", "REQUEST_SCHEME": "http"}, "https"),
        ({"UWSGI_SCHEME": "http", "REQUEST_SCHEME": "https"}, "http"),
        ({"REQUEST_SCHEME": "HTTPS"}, "https"),
        ({"REQUEST_SCHEME": "http"}, "http"),
        ({"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_SSL": "on"}, "http"),
    ],
)
def test_url_scheme(env: dict[str, str], scheme: str) -> None:
    """First non-empty of HTTPS, UWSGI_SCHEME, REQUEST_SCHEME decides; client headers do not."""
    assert url_scheme(env) == scheme


# -- body framing ------------------------------------------------------------------------------


def chunked_packet(body: bytes, **extra: str) -> bytes:
    """A request whose body is chunk-framed (no CONTENT_LENGTH, TE var says chunked)."""
    pairs = [("REQUEST_METHOD", "POST"), ("HTTP_TRANSFER_ENCODING", "chunked")]
    pairs += list(extra.items())
    return packet(*pairs, body=body)


def test_content_length_decides_over_te() -> None:
    """An empty CONTENT_LENGTH still decides: no chunked framing."""
    head = head_of(packet(("CONTENT_LENGTH", ""), ("HTTP_TRANSFER_ENCODING", "chunked")))
    assert not head.chunked and head.content_length == 0


@pytest.mark.parametrize(
    ("te", "chunked"),
    [("gzip, Chunked", True), ("CHUNKED", True), ("gzip", False), ("identity", False)],
)
def test_te_var_decides_without_content_length(te: str, chunked: bool) -> None:
    """Without CONTENT_LENGTH, a TE var containing 'chunked' (any case) means chunked."""
    assert head_of(packet(("HTTP_TRANSFER_ENCODING", te))).chunked is chunked


def test_chunked_extensions_and_trailers_tolerated() -> None:
    """Chunk extensions and trailer fields are read and discarded."""
    body = b"5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\nNEXT"
    parser = UwsgiParser()
    parser.receive_data(chunked_packet(body))
    out = Outcome()
    assert not pull(parser, out)
    assert out.body == b"hello world" and out.complete
    assert parser.trailing_data == b"NEXT"


def test_chunked_in_pieces() -> None:
    """Chunk framing split anywhere decodes the same."""
    data = chunked_packet(b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n")
    expected = run([data]).same_result()
    for cut in range(len(data) + 1):
        assert run([data[:cut], data[cut:]]).same_result() == expected
    assert run([data]).body == b"abc0123456789abcdef"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"zz\r\n", "invalid chunk-size line"),
        (b"0x5\r\nhello\r\n0\r\n\r\n", "invalid chunk-size line"),
        (b"+5\r\nhello\r\n0\r\n\r\n", "invalid chunk-size line"),
        (b"1_0\r\n", "invalid chunk-size line"),
        (b"5\nhello\r\n0\r\n\r\n", "invalid chunk-size line"),
        (b"\r\n", "invalid chunk-size line"),
        (b"11111111111111111\r\n", "invalid chunk-size line"),
        (b"5\r\nhelloXX0\r\n\r\n", "chunk data not followed by CRLF"),
        (b"5\r\nhelloX", "chunk data not followed by CRLF"),
        (b"0\r\nbad trailer\r\n\r\n", "trailer line without a colon"),
        (b"0\r\nX: 1\n\r\n", "trailer line not terminated by CRLF"),
        (b"5" * 5000, "chunk-size line longer than 4096 bytes"),
        (b"0\r\n" + b"X: " + b"y" * 70000, "trailer section larger than 65536 bytes"),
    ],
)
def test_malformed_chunk_framing(body: bytes, reason: str) -> None:
    """Bad chunk framing is an InvalidChunkedBody with a reason, not a hang or a crash."""
    err = error_of(chunked_packet(body))
    assert type(err) is InvalidChunkedBody and err.status == 400
    assert reason in err.reason


def test_truncated_chunked_body_reason() -> None:
    """EOF inside chunk data says how much was decoded and where it stopped."""
    err = error_of(chunked_packet(b"5\r\nhel"))
    assert type(err) is TruncatedPacket
    assert err.reason == (
        "truncated chunked body after 3 data bytes (inside a chunk, 2 data bytes missing)"
    )


# -- parser API --------------------------------------------------------------------------------


def test_body_events_count_down_to_content_length() -> None:
    """Data events hand over at most body_remaining bytes, leaving what follows unread."""
    data = packet(("CONTENT_LENGTH", "10"), body=b"0123")
    parser = UwsgiParser()
    assert parser.body_remaining is None
    parser.receive_data(data)
    assert isinstance(parser.next_event(), UwsgiRequest)
    assert parser.body_remaining == 10
    assert parser.next_event() == Data(b"0123")
    assert parser.body_remaining == 6
    assert parser.next_event() is NEED_DATA
    assert parser.trailing_data == b""
    parser.receive_data(b"456789EXTRA")
    assert parser.next_event() == Data(b"456789")
    assert parser.body_remaining == 0
    assert parser.trailing_data == b"EXTRA"
    assert parser.next_event() == EndOfMessage()
    with pytest.raises(RuntimeError, match="one request per connection"):
        parser.next_event()


def test_data_events_stop_at_content_length() -> None:
    """Bytes after CONTENT_LENGTH never become Data."""
    out = whole(packet(("CONTENT_LENGTH", "3"), body=b"abcGET / HTTP/1.1\r\n"))
    assert out.body == b"abc" and out.complete


def test_receive_after_eof() -> None:
    """Data after EOF is a programming error; repeating EOF is harmless."""
    parser = UwsgiParser()
    parser.receive_data(b"")
    parser.receive_data(b"")
    with pytest.raises(RuntimeError):
        parser.receive_data(b"x")


def test_parse_head_leaves_buffer_alone() -> None:
    """parse_head reads a bytearray in place and reports how much of it was the head."""
    data = packet(("CONTENT_LENGTH", "2"), body=b"hi")
    buf = bytearray(data + b"more")
    result = parse_head(buf)
    assert result is not None
    head, used = result
    assert bytes(buf) == data + b"more"
    assert buf[used:] == b"himore"
    assert isinstance(head, UwsgiRequest) and head.content_length == 2
    assert parse_head(buf[: used - 1]) is None
    assert parse_head(b"\x00\x05") is None


def test_request_equality_and_repr() -> None:
    """Heads compare by value and show their fields."""
    a = head_of(packet(("PATH_INFO", "/")))
    b = head_of(packet(("PATH_INFO", "/")))
    c = head_of(packet(("PATH_INFO", "/x")))
    assert a == b and a != c and a != "x"
    assert "environ={'REQUEST_METHOD': 'GET', 'PATH_INFO': '/'}" in repr(a)
    assert repr(NEED_DATA) == "NEED_DATA"


def test_after_head_without_body_ends_at_once() -> None:
    """A head without a body: the continued parser's first event is the end; later bytes are
    trailing data, never a request."""
    head = head_of(packet(("PATH_INFO", "/")))
    parser = UwsgiParser.after_head(head, b"NEXT")
    assert parser.head is head and parser.body_remaining == 0
    assert parser.next_event() == EndOfMessage()
    assert parser.trailing_data == b"NEXT"


def test_after_head_hands_body_pieces_over_uncopied() -> None:
    """A CONTENT_LENGTH body piece is handed out as received (no copy on the hot path), and
    only the bytes after the body are split off."""
    data = packet(("CONTENT_LENGTH", "10"), body=b"0123")
    head = head_of(data)
    rest = b"0123"
    parser = UwsgiParser.after_head(head, rest)
    event = parser.next_event()
    assert isinstance(event, Data) and event.data is rest
    piece = b"456"
    parser.receive_data(piece)
    event = parser.next_event()
    assert isinstance(event, Data) and event.data is piece
    assert parser.next_event() is NEED_DATA and parser.body_remaining == 3
    parser.receive_data(b"78")
    parser.receive_data(bytearray(b"9EXTRA"))
    assert parser.next_event() == Data(b"789")
    assert parser.next_event() == EndOfMessage()
    assert parser.trailing_data == b"EXTRA"


def test_error_kinds() -> None:
    """Every uwsgi error kind is an InvalidUWSGIHeader answered 400 but an unsupported modifier
    (501); the missing chunked body keeps the reason its log line always had."""
    for kind in (TruncatedPacket, VarsTooLarge, InvalidVars, InvalidChunkedBody):
        assert issubclass(kind, InvalidUWSGIHeader) and kind("x").status == 400
    assert not issubclass(UnsupportedModifier, InvalidUWSGIHeader)
    assert UnsupportedModifier("x").status == 501
    missing = MissingChunkedBody()
    assert isinstance(missing, InvalidUWSGIHeader) and missing.status == 400
    assert missing.reason == (
        "the vars announce a chunked body (HTTP_TRANSFER_ENCODING, no CONTENT_LENGTH) but no "
        "chunk arrived in time; the uWSGI router forwards chunked bodies only with "
        "--http-chunked-input"
    )
