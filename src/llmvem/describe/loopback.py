"""A loopback chat-completions server for tests, benchmarks and checking a set-up without a GPU.

It speaks enough of the OpenAI API for ``/v1/chat/completions`` and ``/v1/models``, answers deterministically
from the image bytes it receives (their SHA-256, size and mode) and injects faults on demand:

- ``faults``: a queue; each request pops the next fault, if any (``"500"``, ``"503"``, ``"429"`` with
  ``Retry-After``, ``"slow"`` (answers after ``slow_s``), ``"malformed"`` (invalid JSON), ``"close"`` (drops the
  connection without answering), ``"empty"`` / ``"garbage"`` (a 200 with an empty / non-text answer),
  ``"401"``, ``"404"``, ``"400"``, ``"trickle"`` (a correct answer, status line and headers included, sent one byte
  every ``trickle_s``: each read succeeds, the whole takes long));
- ``image_faults``: image SHA-256 → fault applied to every request for that image (permanent failures).

Run it alone with ``python -m llmvem.describe.loopback --port 8123`` (it prints its URL, and stops after
``--lifetime`` seconds). Requests are served on threads; the server stops by itself after ``lifetime_s``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("500", "503", "429", "slow", "malformed", "close", "empty", "garbage", "401", "404", "400", "trickle")


def expected_reply(image_bytes: bytes, prompt: str, seed: int | None = None) -> str:
    """The text the server answers for these image bytes, prompt and seed (before any fault)."""
    digest = hashlib.sha256(image_bytes).hexdigest()
    size = mode = "?"
    try:
        from PIL import Image

        with Image.open(io.BytesIO(image_bytes)) as im:
            size, mode = f"{im.size[0]}x{im.size[1]}", im.mode
    except Exception:
        pass
    p = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    return f"A {size} {mode} image with digest {digest[:16]}, prompt {p}, seed {seed}."


def expected_text_reply(prompt: str, seed: int | None = None) -> str:
    """The text the server answers for a text-only request (no image) with this prompt and seed."""
    p = hashlib.sha256(prompt.encode()).hexdigest()[:16]
    return f"A one-sentence summary of prompt {p}, seed {seed}."


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LoopbackChatServer._Server
    timeout = 30  # idle keep-alive connections close after this

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on small replies

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]  # one write
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _trickle(self, body: bytes, every_s: float) -> None:
        """Send a 200 with ``body`` one byte at a time (status line and headers too)."""
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        self.close_connection = True
        try:
            for b in head.encode() + body:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(every_s)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": "loopback", "object": "model"}]}).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:
        owner = self.server.owner
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, b'{"error": {"message": "unknown endpoint"}}')
            return
        try:
            req = json.loads(raw)
            content = req["messages"][-1]["content"]
            image: bytes | None = None
            if isinstance(content, str):  # a text-only request (e.g. summarise captions)
                prompt = content
            else:
                prompt = "".join(c.get("text", "") for c in content if c.get("type") == "text")
                url = next(c["image_url"]["url"] for c in content if c.get("type") == "image_url")
                image = base64.b64decode(url.split(",", 1)[1])
        except (ValueError, KeyError, IndexError, StopIteration, TypeError, AttributeError) as exc:
            self._send(400, json.dumps({"error": {"message": f"bad request: {exc}"}}).encode())
            return
        digest = hashlib.sha256(image if image is not None else prompt.encode()).hexdigest()
        fault = owner._next_fault(digest)
        with owner._lock:
            owner.requests += 1
            owner.received.append(
                {
                    "digest": digest,
                    "prompt": prompt,
                    "model": req.get("model"),
                    "fault": fault,
                    "params": {k: req.get(k) for k in ("temperature", "max_tokens", "seed", "top_p")},
                    "auth": self.headers.get("Authorization"),
                }
            )
        if owner.delay_s:
            time.sleep(owner.delay_s)
        text = (
            expected_reply(image, prompt, req.get("seed"))
            if image is not None
            else expected_text_reply(prompt, req.get("seed"))
        )
        if fault in ("500", "503", "400", "401", "404"):
            self._send(int(fault), json.dumps({"error": {"message": f"injected {fault}"}}).encode())
            return
        if fault == "429":
            self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": f"{owner.retry_after_s:g}"})
            return
        if fault == "close":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        if fault == "malformed":
            self._send(200, b'{"choices": [{"message": {"content": "trunc')
            return
        if fault == "slow":
            time.sleep(owner.slow_s)
        if fault == "empty":
            text = ""
        elif fault == "garbage":
            text = "\x00\x01\ufffd\ufffd ### 123"
        body = {
            "id": f"chatcmpl-{owner.requests}",
            "object": "chat.completion",
            "model": req.get("model"),
            "system_fingerprint": "loopback",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": len(prompt.split()) + 64,
                "completion_tokens": len(text.split()),
                "total_tokens": len(prompt.split()) + 64 + len(text.split()),
            },
        }
        if fault == "trickle":
            self._trickle(json.dumps(body).encode(), owner.trickle_s)
            return
        self._send(200, json.dumps(body).encode())


class LoopbackChatServer:
    """A chat-completions server on ``127.0.0.1`` in background threads (a context manager).

    Args:
        port: 0 picks a free port.
        delay_s: seconds every reply waits (simulates model latency).
        slow_s: seconds a ``"slow"`` fault waits before answering.
        retry_after_s: the ``Retry-After`` of a ``"429"`` fault.
        trickle_s: seconds between the bytes of a ``"trickle"`` answer.
        lifetime_s: the server shuts itself down after this many seconds.

    Attributes:
        url: the API root to give a client (``http://127.0.0.1:PORT/v1``).
        faults: queue of faults for the next requests (see the module docstring).
        image_faults: image SHA-256 → fault for every request of that image.
        requests: requests received; ``received``: one dict per request (digest, prompt, params, fault, auth).
    """

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128
        owner: LoopbackChatServer

        def handle_error(self, request: Any, client_address: Any) -> None:
            import sys

            if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                return  # a client that went away (killed, timed out): expected, not worth a traceback
            super().handle_error(request, client_address)

    def __init__(
        self,
        port: int = 0,
        delay_s: float = 0.0,
        slow_s: float = 2.0,
        retry_after_s: float = 1.0,
        lifetime_s: float = 600.0,
        trickle_s: float = 0.05,
    ) -> None:
        self.delay_s = delay_s
        self.trickle_s = trickle_s
        self.slow_s = slow_s
        self.retry_after_s = retry_after_s
        self.lifetime_s = lifetime_s
        self.faults: deque[str] = deque()
        self.image_faults: dict[str, str] = {}
        self.requests = 0
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd = self._Server(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    def _next_fault(self, digest: str) -> str | None:
        if digest in self.image_faults:
            return self.image_faults[digest]
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def start(self) -> LoopbackChatServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> LoopbackChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="loopback chat-completions server (tests, benchmarks)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds every reply waits")
    ap.add_argument("--lifetime", type=float, default=600.0, help="stop after this many seconds")
    a = ap.parse_args(argv)
    srv = LoopbackChatServer(a.port, delay_s=a.delay, lifetime_s=a.lifetime).start()
    print(srv.url, flush=True)
    try:
        while srv._thread is not None and srv._thread.is_alive():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
