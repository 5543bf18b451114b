"""Half-open connections against `starbucks serve`: are they closed after the bound, and are real
requests served meanwhile? Run by hand (docs/reliability.md has the figures):

    target/release/starbucks serve --model assets/all-MiniLM-L6-v2 --port 8080 &
    python3 tests/reference/half_open.py --url http://127.0.0.1:8080 --connections 3000

Opens N connections, a third each sending nothing, half a request's headers, or the headers and
half a body, then nothing more; meanwhile one client sends real `/embed` requests back to back.
Prints when the stalled connections were closed (seconds after they were opened), what they were
answered, and the real requests' count and latencies. Needs an open-file limit above N.
"""

import argparse
import json
import selectors
import socket
import statistics
import threading
import time
import urllib.request

PREFIXES = {
    "nothing": b"",
    "half the headers": b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Typ",
    "half the body": b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"inputs\":",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--wait", type=float, default=90.0, help="give up on a connection after this many seconds")
    args = parser.parse_args()
    host, port = args.url.removeprefix("http://").split(":")

    latencies, stop = [], threading.Event()

    def real_requests() -> None:
        body = json.dumps({"inputs": "A man is playing a guitar.", "dimensions": 64}).encode()
        while not stop.is_set():
            start = time.monotonic()
            request = urllib.request.Request(f"{args.url}/embed", data=body, headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
            latencies.append(time.monotonic() - start)

    client = threading.Thread(target=real_requests, daemon=True)
    kinds = list(PREFIXES)
    opened = {}
    poller = selectors.DefaultSelector()  # epoll: select() stops at descriptor 1024
    began = time.monotonic()
    for i in range(args.connections):
        kind = kinds[i % len(kinds)]
        sock = socket.create_connection((host, int(port)))
        sock.sendall(PREFIXES[kind])
        sock.setblocking(False)
        opened[sock] = (kind, time.monotonic(), b"")
        poller.register(sock, selectors.EVENT_READ)
    print(f"opened {args.connections} connections in {time.monotonic() - began:.1f} s", flush=True)
    client.start()

    closed = {kind: [] for kind in kinds}
    answers = {kind: {} for kind in kinds}
    deadline = time.monotonic() + args.wait
    while opened and time.monotonic() < deadline:
        for key, _ in poller.select(timeout=0.2):
            sock = key.fileobj
            kind, at, got = opened[sock]
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                opened[sock] = (kind, at, got + chunk)
                continue
            closed[kind].append(time.monotonic() - at)
            status = got.split(b"\r\n", 1)[0].decode() or "(closed without an answer)"
            answers[kind][status] = answers[kind].get(status, 0) + 1
            poller.unregister(sock)
            sock.close()
            del opened[sock]
    stop.set()
    client.join()

    for kind in kinds:
        times = sorted(closed[kind])
        if times:
            print(
                f"{kind}: {len(times)} closed after {times[0]:.1f} s (first), {statistics.median(times):.1f} s (median), "
                f"{times[-1]:.1f} s (last); answered {answers[kind]}"
            )
    print(f"still open after {args.wait:.0f} s: {len(opened)}")
    ms = sorted(x * 1e3 for x in latencies)
    print(
        f"real requests meanwhile: {len(ms)} answered 200, latency p50 {statistics.median(ms):.1f} ms, "
        f"p99 {ms[int(len(ms) * 0.99)]:.1f} ms, max {ms[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
