"""One error tree for every wire protocol, so workers treat a bad peer the same way on any wire;
and :class:`ResponseError`, the one error for a response the server refuses to send."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer sent bytes we cannot serve.

    ``reason`` says precisely what was wrong (it goes into the log line); ``status`` is the HTTP
    status to answer with when the connection is still writable.
    """

    status: int = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status


class InvalidHTTPRequest(ProtocolError):
    """An HTTP/1.x request that breaks the grammar or framing rules (400)."""


class RequestLineTooLong(InvalidHTTPRequest):
    """The request line exceeds ``limit_request_line`` (414)."""

    status = 414


class HeadersTooLarge(InvalidHTTPRequest):
    """Too many header fields, or one too large (431)."""

    status = 431


class MethodNotImplemented(InvalidHTTPRequest):
    """A method the server never serves, such as CONNECT (501)."""

    status = 501


class VersionNotSupported(InvalidHTTPRequest):
    """An HTTP version other than 1.0 and 1.1, such as HTTP/2.0 on an HTTP/1.1 wire (505)."""

    status = 505


class InvalidUWSGIHeader(ProtocolError):
    """A malformed uWSGI packet (400): the base of the uwsgi error kinds below."""


class TruncatedPacket(InvalidUWSGIHeader):
    """The peer closed inside the packet: its header, vars block or body (400)."""


class VarsTooLarge(InvalidUWSGIHeader):
    """A vars block larger than ``uwsgi_max_vars_size`` (400)."""


class InvalidVars(InvalidUWSGIHeader):
    """A vars block that does not decode, or vars no request can have (400)."""


class InvalidChunkedBody(InvalidUWSGIHeader):
    """A chunk-framed body that breaks the chunk framing (400)."""


class MissingChunkedBody(InvalidUWSGIHeader):
    """The vars announce a chunked body and no chunk came in time (400)."""

    def __init__(self) -> None:
        super().__init__(
            "the vars announce a chunked body (HTTP_TRANSFER_ENCODING, no CONTENT_LENGTH) but "
            "no chunk arrived in time; the uWSGI router forwards chunked bodies only with "
            "--http-chunked-input"
        )


class UnsupportedModifier(ProtocolError):
    """A uWSGI packet whose modifier1 names something a WSGI/ASGI server does not serve (501)."""

    status = 501


class InvalidProxyHeader(ProtocolError):
    """A PROXY protocol header that breaks the specification, one from a peer not allowed to
    send it, or none where one is required. The connection is closed without an answer: the
    header comes before the protocol (and before a TLS handshake), so there is no one to answer.
    """


class ResponseError(Exception):
    """The application's response breaks the rules (bad status or header, a misused
    ``start_response``); the server refuses to put it on the wire. Our side's fault, not the
    peer's: not a :class:`ProtocolError`."""
