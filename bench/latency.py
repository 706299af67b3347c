"""A TCP proxy on 127.0.0.1 that adds latency: every byte arrives ``delay`` ms later.

This machine's kernel has no netem qdisc (FIELD-NOTES), so the benchmark puts this proxy
in front of the server and sends every client (psql, predeploy, the peers) through it.
Each direction of each connection is delayed by half the round trip; bandwidth is not
limited (chunks queue and leave when due, in order). Threads and time.sleep, not asyncio:
the event loop's timers round up to whole milliseconds, which made 2 ms into 2.6.

    python bench/latency.py --target-port 5432 --round-trip-ms 2 [--port 0]
    (prints the port it listens on, then serves until killed; --port 0: any free one)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import socket
import sys
import threading
import time


def _pipe(source: socket.socket, target: socket.socket, delay: float) -> None:
    """Copy ``source`` to ``target``, each chunk ``delay`` seconds after it arrived."""
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    ready = threading.Condition()

    def send() -> None:
        while True:
            with ready:
                while not queue:
                    ready.wait()
                due, data = queue.popleft()
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            if not data:
                break
            try:
                target.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    while True:
        try:
            data = source.recv(1 << 16)
        except OSError:
            data = b""
        with ready:
            queue.append((time.perf_counter() + delay, data))
            ready.notify()
        if not data:
            break
    sender.join()


def _connection(client: socket.socket, target_port: int, delay: float) -> None:
    try:
        server = socket.create_connection(("127.0.0.1", target_port))
    except OSError:
        client.close()
        return
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_pipe, args=(server, client, delay), daemon=True)
    back.start()
    _pipe(client, server, delay)
    back.join()
    client.close()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--round-trip-ms", type=float, default=2.0)
    parser.add_argument("--port", type=int, default=0, help="the port to listen on (0: any)")
    args = parser.parse_args()
    delay = args.round_trip_ms / 2000.0
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(256)
    print(listener.getsockname()[1], flush=True)
    try:
        while True:
            client, _ = listener.accept()
            threading.Thread(
                target=_connection, args=(client, args.target_port, delay), daemon=True
            ).start()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
