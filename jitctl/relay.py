"""Bytes between a client and the VM: a stdin/stdout relay (ssh's ProxyCommand) and a local
port forward (tunnel). Sockets and threads only, so the same code runs on Windows, where
select() does not work on pipes.

Each direction is one thread. End of input on one side is passed on as a half-close
(shutdown(SHUT_WR)) to the other, so `ssh host cmd < file` and a server that closes first both
finish; a relay ends when both directions have ended.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

CHUNK = 64 * 1024
LOOPBACK = "127.0.0.1"


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the VM; the timeout applies to connecting only."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _half_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the peer may be gone already
        sock.shutdown(socket.SHUT_WR)


def _stream_to_socket(source: BinaryIO, sock: socket.socket, counter: list[int]) -> None:
    read = getattr(source, "read1", source.read)  # read1: what is there, without waiting for more
    try:
        while data := read(CHUNK):
            sock.sendall(data)
            counter[0] += len(data)
    except (OSError, ValueError):  # the socket was reset, or the stream closed under us
        pass
    finally:
        _half_close(sock)


def _socket_to_stream(
    sock: socket.socket, sink: BinaryIO, counter: list[int], on_eof: Callable[[], None] | None
) -> None:
    try:
        while data := sock.recv(CHUNK):
            sink.write(data)
            sink.flush()
            counter[0] += len(data)
    except (OSError, ValueError):  # reset by the peer, or the client closed its end
        pass
    finally:
        if on_eof is not None:
            with contextlib.suppress(OSError, ValueError):
                on_eof()


@dataclass
class Relayed:
    """Bytes moved each way."""

    sent: int = 0  # client -> VM
    received: int = 0  # VM -> client


def relay_stdio(
    sock: socket.socket,
    source: BinaryIO,
    sink: BinaryIO,
    on_sink_eof: Callable[[], None] | None = None,
) -> Relayed:
    """Relay source -> sock and sock -> sink until both directions end; then close sock.

    `on_sink_eof` is called when the VM has finished sending (the CLI closes stdout there, so
    ssh sees the end of the connection)."""
    up, down = [0], [0]
    threads = [
        threading.Thread(target=_stream_to_socket, args=(source, sock, up), daemon=True),
        threading.Thread(
            target=_socket_to_stream, args=(sock, sink, down, on_sink_eof), daemon=True
        ),
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    finally:
        sock.close()
    return Relayed(up[0], down[0])


def _pipe(src: socket.socket, dst: socket.socket, counter: list[int]) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
            counter[0] += len(data)
    except OSError:
        pass
    finally:
        _half_close(dst)


def relay_sockets(a: socket.socket, b: socket.socket) -> Relayed:
    """Relay between two sockets until both directions end; then close both."""
    up, down = [0], [0]
    other = threading.Thread(target=_pipe, args=(b, a, down), daemon=True)
    other.start()
    try:
        _pipe(a, b, up)
        other.join()
    finally:
        a.close()
        b.close()
    return Relayed(up[0], down[0])


@dataclass
class Tunnel:
    """A local port on 127.0.0.1 (never another interface) forwarded to host:port.

    `start()` binds and returns the local address; connections are accepted and relayed in
    threads until `close()`."""

    host: str
    port: int
    local_port: int = 0  # 0: a free port
    connect_timeout: float = 10.0
    on_event: Callable[[str], None] | None = None
    connections: int = 0
    failures: int = 0
    _listener: socket.socket | None = None
    _closed: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> tuple[str, int]:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: no other program may share it
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        listener.bind((LOOPBACK, self.local_port))
        listener.listen(16)
        listener.settimeout(0.2)  # accept() wakes to see close(): closing alone wakes no thread
        self._listener = listener
        accept = threading.Thread(target=self._accept_loop, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None, "start() first"
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def _say(self, message: str) -> None:
        if self.on_event is not None:
            self.on_event(message)

    def follow(self, port: int) -> None:
        """Forward new connections to `port` (Azure Firewall mapped the VM's port anew)."""
        self.port = port

    def follow_host(self, host: str) -> None:
        """Forward new connections to `host` (the VM's dynamic public IP changed)."""
        self.host = host

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by close()
                return
            client.settimeout(None)
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = connect(self.host, self.port, self.connect_timeout)
        except OSError as err:
            self.failures += 1
            self._say(f"Cannot reach {self.host}:{self.port}: {err.strerror or err}.")
            client.close()
            return
        self.connections += 1
        relay_sockets(client, upstream)

    def close(self) -> None:
        """Stop accepting; connections in progress end when their ends close them."""
        self._closed.set()
        if self._listener is not None:
            self._listener.close()
