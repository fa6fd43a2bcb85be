"""One query over UDP read with our own wire reader (endpoints.ask_one)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import dns.name
import pytest

from tlsa_manager import wire
from tlsa_manager.endpoints import ask_one, parse_endpoint


def test_a_server_sending_only_answers_to_other_queries_cannot_hold_the_query() -> None:
    """A hostile or confused server answers every 10 ms, never with our query's id: each
    datagram used to be a fresh timeout for the next read, so the query never ended."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def answer_wrongly() -> None:
        data, peer = server.recvfrom(4096)
        (qid,) = struct.unpack_from("!H", data)
        junk = struct.pack("!HHHHHH", (qid + 1) % 65536, wire.FLAG_QR | wire.FLAG_AA, 1, 0, 0, 0) + data[12:]
        while not stop.wait(0.01):
            server.sendto(junk, peer)

    thread = threading.Thread(target=answer_wrongly, daemon=True)
    thread.start()
    endpoint = parse_endpoint(f"127.0.0.1:{server.getsockname()[1]}")
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            ask_one(endpoint, dns.name.from_text("_25._tcp.mx.example.com."), 52, timeout=1.0)
        assert time.monotonic() - started < 3.0
    finally:
        stop.set()
        thread.join(2)
        server.close()
