"""The follower front's HTTP/1.0 bytes, no sockets: the request it sends over a client link and
how it reads the leader's answer (which ends when the leader closes the link)."""

from __future__ import annotations

import pytest

from broker.cluster.httpfront import _parse_answer, _request_bytes


def test_the_request_is_http_1_0_with_the_clients_target_host_and_body() -> None:
    asked = _request_bytes("PUT", "/api/queues/%2F/q?x=1", "node2:15672",
                           [("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")], b'{"durable":true}')
    head, _, body = asked.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [b"PUT /api/queues/%2F/q?x=1 HTTP/1.0", b"Host: node2:15672",
                                   b"Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=",
                                   b"Content-Length: 16"]
    assert body == b'{"durable":true}'


def test_an_answer_keeps_repeated_headers_and_its_body() -> None:
    answer = (b"HTTP/1.0 201 Created\r\nContent-Type: application/json\r\nSet-Cookie: a=1\r\n"
              b"Set-Cookie: b=2\r\nContent-Length: 2\r\n\r\n{}")
    status, headers, body = _parse_answer(answer)
    assert (status, body) == (201, b"{}")
    assert [value for name, value in headers if name == "Set-Cookie"] == ["a=1", "b=2"]


def test_an_answer_to_head_has_no_body_whatever_its_length_says() -> None:
    answer = b"HTTP/1.0 200 OK\r\nContent-Length: 120\r\n\r\n"
    assert _parse_answer(answer, to_head=True) == (200, [("Content-Length", "120")], b"")


@pytest.mark.parametrize("answer", [
    b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # the link closed mid-body
    b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n",  # ... or mid-headers
    b"",  # ... or before anything
    b"AMQP\x00\x00\x09\x01\r\n\r\n",  # not HTTP
])
def test_a_cut_or_foreign_answer_is_refused(answer: bytes) -> None:
    with pytest.raises(ValueError):
        _parse_answer(answer)
