"""The ``openai`` backend: any OpenAI-compatible chat-completions server (vLLM, ollama, LM Studio, llama.cpp
server, hosted APIs), images sent inline as base64 data URLs.

Retries: 429, 5xx, timeouts, dropped connections and malformed replies are retried with exponential backoff and
full jitter (``retry_base_s · 2^attempt``, capped at ``retry_max_s``); a ``Retry-After`` header is honoured and
pauses *every* worker, since the server asked the client as a whole to slow down. 401/403 (bad key) and 404 (unknown
model or endpoint) stop the run at once: every other request would fail the same way. Other 4xx fail the request.

The API key is read from an environment variable (``api_key_env``, default ``OPENAI_API_KEY``) when the describer
is built; it is sent only in the ``Authorization`` header, is no part of the describer's identity or of any record,
and is masked in every error message. Credentials written into ``base_url`` (``https://user:key@host/v1``) are
taken out of the URL at once (sent as HTTP basic auth) and masked the same way: no message or record shows them.

Timeouts: ``timeout_s`` bounds each attempt as a whole — connecting, sending and reading the whole answer — not each
socket read, so a server that trickles its answer a byte at a time still fails at ``timeout_s`` (a "timed out"
failure, retried like any other).
"""

from __future__ import annotations

import email.utils
import functools
import json
import math
import os
import random
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from llmvem.config import split_url_credentials
from llmvem.describe.base import DESCRIBERS, DescribeFailure, Generation, ImageRequest
from llmvem.describe.images import DEFAULT_MAX_SIDE, prepare_image
from llmvem.errors import ConfigError

if TYPE_CHECKING:
    import httpx

#: per thread: the monotonic time by which the request in flight must be finished (see ``_DeadlineBackend``)
_DEADLINE = threading.local()

#: statuses worth retrying: rate limits, timeouts, server errors and overloaded proxies
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})
GENERATION_KEYS = ("temperature", "max_tokens", "seed", "top_p")


class OpenAICompatibleDescriber:
    """Describes images through an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        model: the model name the server knows (``qwen2.5vl:7b`` for ollama, the HF id for vLLM).
        base_url: the API root, e.g. ``http://localhost:8000/v1`` (vLLM) or ``http://localhost:11434/v1`` (ollama).
        api_key_env: environment variable holding the API key (unset: no ``Authorization`` header).
        revision: a free-form model version recorded in the identity (a weights digest or tag) — a server cannot
            prove which weights stand behind a name, so say it when it matters.
        max_side: images are downscaled to this longer side before sending (recorded with the description).
        timeout_s: seconds allowed for each attempt as a whole (connect, send and read the whole answer).
        max_retries: retries after the first attempt.
        retry_base_s, retry_max_s: backoff base and cap (seconds).
        system_prompt: optional system message.
    """

    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str = "http://localhost:8000/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        revision: str | None = None,
        max_side: int | None = DEFAULT_MAX_SIDE,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        system_prompt: str | None = None,
    ) -> None:
        if not model:
            raise ConfigError("the openai backend needs a model name (--model), as the server knows it")
        base_url, user, password = split_url_credentials(base_url)
        # masked in every message: the password, or a user name given alone (a token: https://TOKEN@host); a user
        # name beside a password is no secret, and masking a short one would garble messages ("ref***sed")
        self._secrets = [password] if password else [user] if user else []
        if not base_url.startswith(("http://", "https://")):
            shown = f"***@{base_url.rpartition('@')[2]}" if "@" in base_url else base_url  # no scheme: not split
            raise ConfigError(f"describe.base_url must start with http:// or https://, got {self._mask(shown)!r}")
        if not (math.isfinite(timeout_s) and timeout_s > 0) or max_retries < 0 or not retry_base_s >= 0:
            raise ConfigError(
                f"timeout_s must be a finite number > 0 (got {timeout_s}), max_retries and retry_base_s ≥ 0"
            )
        self._basic_auth = (user or "", password or "") if (user or password) else None
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.revision = revision
        self.max_side = max_side
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.retry_base_s = float(retry_base_s)
        self.retry_max_s = float(retry_max_s)
        self.system_prompt = system_prompt
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        import httpx  # noqa: F401  (imported here, not by the first request: keeps request timings honest)

        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()
        self._not_before = 0.0  # monotonic time before which no request is sent (Retry-After)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatibleDescriber(model={self.model!r}, base_url={self.base_url!r})"

    def identity(self) -> dict[str, Any]:
        """Backend, model, revision, image preprocessing and system prompt (not the URL: a moved server resumes)."""
        return {
            "backend": self.backend,
            "model": self.model,
            "revision": self.revision,
            "max_side": self.max_side,
            "system_prompt": self.system_prompt,
        }

    # ------------------------------------------------------------------ HTTP
    def client(self) -> httpx.Client:
        """This thread's HTTP client (one keep-alive connection per worker thread: no pool lock is shared)."""
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            import httpx

            headers = {"Content-Type": "application/json", "User-Agent": "llmvem-describe"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            client = httpx.Client(
                headers=headers,
                auth=httpx.BasicAuth(*self._basic_auth) if self._basic_auth else None,
                timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0)),
                transport=_deadline_transport(),
                trust_env=True,
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every connection this describer opened."""
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            c.close()
        self._local = threading.local()

    def _mask(self, text: str) -> str:
        for secret in [getattr(self, "_api_key", None), *getattr(self, "_secrets", [])]:
            if secret:
                text = text.replace(secret, "***")
        return text

    def request_body(self, data_url: str, prompt: str, params: Mapping[str, Any], sample: int) -> dict[str, Any]:
        """The chat-completions JSON body: one user message with the prompt text and the image."""
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            }
        )
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        for k in GENERATION_KEYS:
            if params.get(k) is not None:
                body[k] = params[k]
        if body.get("seed") is not None:
            body["seed"] = int(body["seed"]) + sample  # samples differ, and each is reproducible
        return body

    def describe(self, image: ImageRequest, prompt: str, params: Mapping[str, Any], sample: int) -> Generation:
        prepared = prepare_image(image.path, self.max_side)
        body = json.dumps(self.request_body(prepared.data_url(), prompt, params, sample)).encode()
        gen = self._post(body)
        gen.image_notes = prepared.notes
        if "seed" in params and params["seed"] is not None:
            gen.info["seed"] = int(params["seed"]) + sample
        return gen

    def complete(self, prompt: str, params: Mapping[str, Any], sample: int = 0) -> Generation:
        """A text-only chat completion (no image): one user message ``prompt``; retried like :meth:`describe`."""
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": prompt})
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        body.update({k: params[k] for k in GENERATION_KEYS if params.get(k) is not None})
        if body.get("seed") is not None:
            body["seed"] = int(body["seed"]) + sample
        return self._post(json.dumps(body).encode())

    def _post(self, body: bytes) -> Generation:
        import httpx

        client = self.client()
        reason = ""
        for attempt in range(self.max_retries + 1):
            self._wait_turn()
            retry_after: float | None = None
            _DEADLINE.t = time.monotonic() + self.timeout_s  # the whole attempt, body included
            try:
                resp = client.post(self.url, content=body)
            except httpx.TimeoutException as exc:
                reason = f"timed out after {self.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                reason = f"connection failed ({type(exc).__name__}: {self._mask(str(exc)) or 'closed'})"
            else:
                status = resp.status_code
                if status == 200:
                    try:
                        return self._parse(resp.content, attempt + 1)
                    except ValueError as exc:
                        reason = f"malformed response ({exc})"
                elif status in RETRY_STATUSES:
                    reason = f"HTTP {status}{_detail(resp, self._mask)}"
                    retry_after = _retry_after(resp.headers.get("retry-after"))
                elif status in (401, 403):
                    raise DescribeFailure(
                        f"HTTP {status}: the server refused the request{_detail(resp, self._mask)}; check the API "
                        "key environment variable (describe.api_key_env)",
                        attempt + 1,
                        fatal=True,
                    )
                elif status == 404:
                    raise DescribeFailure(
                        f"HTTP 404 from {self.url}{_detail(resp, self._mask)}: unknown model {self.model!r} or wrong "
                        "base URL (it usually ends in /v1)",
                        attempt + 1,
                        fatal=True,
                    )
                else:
                    raise DescribeFailure(f"HTTP {status}{_detail(resp, self._mask)}", attempt + 1)
            finally:
                _DEADLINE.t = None
            if attempt == self.max_retries:
                break
            if retry_after is not None:
                delay = min(retry_after, max(self.retry_max_s, 1.0) * 10)
                with self._lock:
                    self._not_before = max(self._not_before, time.monotonic() + delay)
            else:
                time.sleep(random.uniform(0, min(self.retry_max_s, self.retry_base_s * 2**attempt)))
        raise DescribeFailure(f"{reason} (gave up after {self.max_retries + 1} attempts)", self.max_retries + 1)

    def _wait_turn(self) -> None:
        while True:
            with self._lock:
                delay = self._not_before - time.monotonic()
            if delay <= 0:
                return
            time.sleep(min(delay, 1.0))

    @staticmethod
    def _parse(content: bytes, attempts: int) -> Generation:
        try:
            data = json.loads(content)
        except ValueError:
            raise ValueError(f"not JSON: {content[:80]!r}") from None
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"no choices[0].message.content in {str(data)[:120]}") from None
        if isinstance(text, list):  # content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        usage = data.get("usage") or {}
        info = {k: data[k] for k in ("model", "system_fingerprint") if data.get(k)}
        return Generation(
            text=text if isinstance(text, str) else "",
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            finish_reason=choice.get("finish_reason"),
            attempts=attempts,
            info=info,
        )


def _deadline_transport() -> httpx.BaseTransport:
    """One keep-alive connection, TCP_NODELAY, and every socket operation bounded by the thread's request deadline."""
    return _transport_class()()


@functools.cache
def _transport_class() -> type[httpx.BaseTransport]:
    """The transport class, built on first use (httpx loads lazily).

    An httpx transport (httpx's documented custom-transport hook, ``handle_request``) over an httpcore
    ``ConnectionPool`` whose ``network_backend`` (httpcore's documented hook) is :class:`_DeadlineBackend`: what
    ``httpx.HTTPTransport`` does, with our backend, without reaching into its private pool — the request goes to
    httpcore, httpcore's errors come back as the most specific httpx error, the body is streamed through.
    """
    import httpcore
    import httpx

    errors = (  # most specific first, as httpx.HTTPTransport maps them
        (httpcore.ConnectTimeout, httpx.ConnectTimeout), (httpcore.ReadTimeout, httpx.ReadTimeout),
        (httpcore.WriteTimeout, httpx.WriteTimeout), (httpcore.PoolTimeout, httpx.PoolTimeout),
        (httpcore.TimeoutException, httpx.TimeoutException), (httpcore.ConnectError, httpx.ConnectError),
        (httpcore.ReadError, httpx.ReadError), (httpcore.WriteError, httpx.WriteError),
        (httpcore.NetworkError, httpx.NetworkError), (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
        (httpcore.LocalProtocolError, httpx.LocalProtocolError), (httpcore.ProtocolError, httpx.ProtocolError),
        (httpcore.ProxyError, httpx.ProxyError), (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    )  # fmt: skip

    def as_httpx(exc: Exception) -> Exception:
        return next((dst(str(exc)) for src, dst in errors if isinstance(exc, src)), exc)

    class ResponseStream(httpx.SyncByteStream):
        def __init__(self, stream: Any) -> None:
            self._stream = stream

        def __iter__(self) -> Iterator[bytes]:
            try:
                yield from self._stream
            except Exception as exc:
                raise as_httpx(exc) from exc

        def close(self) -> None:
            if hasattr(self._stream, "close"):
                self._stream.close()

    class DeadlineTransport(httpx.BaseTransport):
        def __init__(self) -> None:
            self._connections = httpcore.ConnectionPool(
                ssl_context=httpx.create_ssl_context(trust_env=True),
                max_connections=1,
                max_keepalive_connections=1,
                keepalive_expiry=httpx.Limits().keepalive_expiry,
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],  # headers and body leave at once
                network_backend=_DeadlineBackend(),  # type: ignore[arg-type]  # duck-typed NetworkBackend
            )

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            url = request.url
            req = httpcore.Request(
                method=request.method,
                url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
                headers=request.headers.raw,
                content=request.stream,  # a sync byte stream
                extensions=request.extensions,
            )
            try:
                resp = self._connections.handle_request(req)
            except Exception as exc:
                raise as_httpx(exc) from exc
            stream = ResponseStream(resp.stream)
            return httpx.Response(resp.status, headers=resp.headers, stream=stream, extensions=resp.extensions)

        def close(self) -> None:
            self._connections.close()

    return DeadlineTransport


def _remaining(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of the thread's request deadline; ``error`` once it has passed."""
    deadline = getattr(_DEADLINE, "t", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream:
    """A network stream whose reads and writes never outlast the request deadline (httpcore ``NetworkStream``)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import httpcore

        data: bytes = self._stream.read(max_bytes, _remaining(timeout, httpcore.ReadTimeout))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        import httpcore

        self._stream.write(buffer, _remaining(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        import httpcore

        t = _remaining(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, t))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend:
    """httpcore's sync network backend with :class:`_DeadlineStream` streams."""

    def __init__(self) -> None:
        import httpcore

        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, **kw: Any) -> _DeadlineStream:
        import httpcore

        t = _remaining(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_tcp(host, port, t, **kw))

    def connect_unix_socket(self, path: str, timeout: float | None = None, **kw: Any) -> _DeadlineStream:
        import httpcore

        t = _remaining(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, t, **kw))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(resp: httpx.Response, mask: Any) -> str:
    text = resp.text.strip().replace("\n", " ")
    return f": {mask(text[:200])}" if text else ""


@DESCRIBERS.register("openai")
def _make_openai(model: str, **kwargs: Any) -> OpenAICompatibleDescriber:
    return OpenAICompatibleDescriber(model, **kwargs)
