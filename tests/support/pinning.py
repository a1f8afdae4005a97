"""Steer a request to one chosen gunicorn worker by keeping the others busy.

Each sync worker handles one connection at a time, so a connection whose request headers are
left unfinished pins whichever worker accepted it: with every worker but one pinned, the next
request can only be answered by that one. Which worker holds a pinned connection is read from
``/proc`` (the socket inode among the worker's file descriptors), so a test can assert which
pid answered without trusting the scheduler.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterable


def pin_a_worker(port: int) -> socket.socket:
    """Open a connection and send unfinished request headers: the accepting worker blocks."""
    pin = socket.create_connection(("127.0.0.1", port), timeout=10)
    pin.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return pin


def release(pin: socket.socket) -> None:
    """Finish the request and read the whole response (the worker is free again after it)."""
    pin.sendall(b"\r\n")
    response = b""
    while chunk := pin.recv(65536):
        response += chunk
    pin.close()
    assert response.startswith(b"HTTP/1.1 200"), response[:200]


def holder(port: int, worker_pids: Iterable[int], pin: socket.socket) -> int:
    """The pid of the worker holding the server side of ``pin`` (from /proc)."""
    client_port = pin.getsockname()[1]
    pids = tuple(worker_pids)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        inode = server_socket_inode(port, client_port)
        if inode:
            for pid in pids:
                with contextlib.suppress(FileNotFoundError, PermissionError):
                    for fd in os.listdir(f"/proc/{pid}/fd"):
                        with contextlib.suppress(FileNotFoundError):
                            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                                return pid
        time.sleep(0.02)
    raise AssertionError(f"no worker accepted the pinned connection from port {client_port}")


def server_socket_inode(server_port: int, client_port: int) -> int:
    """Inode of the established 127.0.0.1:server_port <- :client_port socket (0 until accepted)."""
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if (
                state == "01"
                and int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port
            ):
                return int(inode)
    return 0


def pin_all_but(port: int, worker_pids: Iterable[int], free: int) -> list[socket.socket]:
    """Pin every worker except ``free``, so the next request is answered by ``free``.

    Returns the pins (:func:`release` each one when done). A pin that lands on ``free`` is
    released again once every other worker is held.
    """
    pids = set(worker_pids)
    others = pids - {free}
    pins: list[socket.socket] = []
    held: set[int] = set()
    on_free: list[socket.socket] = []
    while held != others:
        pin = pin_a_worker(port)
        pid = holder(port, pids, pin)
        if pid == free:
            on_free.append(pin)
        else:
            pins.append(pin)
            held.add(pid)
    for pin in on_free:
        release(pin)
    return pins
