"""TEST DOUBLE of an OpenAI-compatible vLLM server. Not vLLM; it generates no text.

It imitates just enough of vLLM's HTTP surface for the load tester's tests, with the
timing and failure behaviour under the test's control:

* ``POST /v1/completions`` and ``POST /v1/chat/completions`` with ``"stream": true``: SSE
  ``data:`` chunks (chat starts with a role-only chunk, like vLLM), one token per chunk whose
  text holds non-ASCII and an unescaped U+2028, an optional final ``usage`` chunk when
  ``stream_options.include_usage`` is set, then ``data: [DONE]``.
* ``GET /v1/models``, ``GET /health`` and ``GET /metrics`` (Prometheus text with
  ``vllm:num_requests_running``, ``vllm:num_requests_waiting`` and the new or old KV-cache
  gauge, each split over two ``engine`` label sets).
* A fixed number of slots: at most ``max_running`` requests generate at once, each for the
  same service time (``ttft_s + (num_tokens - 1) * itl_s``), so throughput grows with
  concurrency up to ``max_running`` and is flat beyond it. The rest wait in a FIFO queue.
  ``/metrics`` reports the scheduler's own counts: ``vllm:num_requests_running`` is the slots in
  use, ``vllm:num_requests_waiting`` the queue length, and the KV-cache gauge is
  ``running / max_running``. A slot is freed when the last token is generated, before the
  final chunks are written (as vLLM frees a finished sequence), so a closed-loop client at
  exactly ``max_running`` sees no queue. Queue time counts towards TTFT, as in vLLM.
* Deterministic fault injection: exactly ``error_rate`` of completion requests get
  ``error_status``, and ``bad_stream_rate`` of the others send one token and then a
  malformed chunk; ``hang=True`` makes every endpoint except ``/health`` never answer.
* With ``api_key`` set, ``/v1/*`` requires ``Authorization: Bearer <api_key>`` (vLLM leaves
  ``/metrics`` and ``/health`` open too).

It binds to 127.0.0.1 only. Run ``python tests/fake_vllm.py --port 8000`` to try the load
tester by hand.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KV_METRIC_NAMES = {"new": "vllm:kv_cache_usage_perc", "old": "vllm:gpu_cache_usage_perc"}


@dataclass
class Behaviour:
    model: str = "fake-model"
    ttft_s: float = 0.05
    itl_s: float = 0.01
    num_tokens: int = 8
    max_running: int = 64
    error_rate: float = 0.0
    error_status: int = 503
    bad_stream_rate: float = 0.0
    kv_metric: str = "new"
    api_key: str | None = None
    hang: bool = False


def _nth_is_hit(n: int, rate: float) -> bool:
    """True for exactly ``rate`` of n = 1, 2, 3, ... (evenly spread), unlike a random draw."""
    return math.floor(n * rate + 1e-9) > math.floor((n - 1) * rate + 1e-9)


class Scheduler:
    """FIFO admission with ``max_running`` slots; a freed slot goes straight to the oldest waiter."""

    def __init__(self, max_running: int) -> None:
        self._max_running = max_running
        self._lock = threading.Lock()
        self._running = 0
        self._waiters: collections.deque[threading.Event] = collections.deque()
        self.peak_running = 0
        self.peak_waiting = 0

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self._running, len(self._waiters)

    def acquire(self, closing: threading.Event) -> bool:
        with self._lock:
            if self._running < self._max_running and not self._waiters:
                self._running += 1
                self.peak_running = max(self.peak_running, self._running)
                return True
            granted = threading.Event()
            self._waiters.append(granted)
            self.peak_waiting = max(self.peak_waiting, len(self._waiters))
        while not granted.wait(0.05):
            if closing.is_set():
                with self._lock:
                    if granted in self._waiters:
                        self._waiters.remove(granted)
                        return False
                # The slot was handed over while we were giving up: give it back.
                self.release()
                return False
        return True

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._running -= 1


class FakeVLLM:
    """The test double; use as a context manager: ``with FakeVLLM(Behaviour(...)) as fake:``."""

    def __init__(self, behaviour: Behaviour, port: int = 0) -> None:
        self.behaviour = behaviour
        self.scheduler = Scheduler(behaviour.max_running)
        self.closing = threading.Event()
        self._counter_lock = threading.Lock()
        self.completion_requests = 0
        self.unauthorized = 0
        self._streams = 0
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-vllm", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeVLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()

    def next_completion(self) -> tuple[bool, bool]:
        """Count a completion request; return (inject HTTP error, inject bad stream)."""
        with self._counter_lock:
            self.completion_requests += 1
            if _nth_is_hit(self.completion_requests, self.behaviour.error_rate):
                return True, False
            self._streams += 1
            return False, _nth_is_hit(self._streams, self.behaviour.bad_stream_rate)

    def metrics_text(self) -> str:
        running, waiting = self.scheduler.counts()
        model = self.behaviour.model
        kv_name = KV_METRIC_NAMES[self.behaviour.kv_metric]
        kv_usage = running / self.behaviour.max_running
        lines: list[str] = []
        for name, kind, total in (
            ("vllm:num_requests_running", "gauge", running),
            ("vllm:num_requests_waiting", "gauge", waiting),
        ):
            lines += [f"# HELP {name} Fake.", f"# TYPE {name} {kind}"]
            # Split over two engines so that clients must sum label sets.
            for engine, value in (("0", total - total // 2), ("1", total // 2)):
                lines.append(f'{name}{{engine="{engine}",model_name="{model}"}} {float(value)}')
        lines += [f"# HELP {kv_name} Fake.", f"# TYPE {kv_name} gauge"]
        lines += [f'{kv_name}{{engine="{e}",model_name="{model}"}} {kv_usage}' for e in ("0", "1")]
        # Noise a parser must skip over: a label value with spaces, braces and quotes, and +Inf.
        lines.append('vllm:fake_info{note="a } b \\" c",model_name="x y"} 1.0')
        lines.append(f'vllm:e2e_request_latency_seconds_bucket{{le="+Inf",model_name="{model}"}} 3')
        return "\n".join(lines) + "\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connects when a step opens dozens at once, and
    # the client's SYN retry (1 s) would then look like a throughput drop.
    request_queue_size = 256
    fake: FakeVLLM


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    # Idle keep-alive connections are dropped after this many seconds.
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    @property
    def fake(self) -> FakeVLLM:
        return self.server.fake

    def _hang(self) -> None:
        self.fake.closing.wait()
        self.close_connection = True

    def _send_json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        key = self.fake.behaviour.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        with self.fake._counter_lock:
            self.fake.unauthorized += 1
        self._send_json(401, {"error": "Unauthorized"})
        return False

    def do_GET(self) -> None:
        if self.path == "/health":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.fake.behaviour.hang:
            self._hang()
        elif self.path == "/metrics":
            data = self.fake.metrics_text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/v1/models":
            if self._authorized():
                self._send_json(200, {"object": "list", "data": [{"id": self.fake.behaviour.model}]})
        else:
            self._send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.fake.behaviour.hang:
            self._hang()
            return
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            self._send_json(404, {"error": "not found"})
            return
        if not self._authorized():
            return
        behaviour = self.fake.behaviour
        if body.get("model") != behaviour.model:
            self._send_json(404, {"object": "error", "message": "The model does not exist.", "code": 404})
            return
        if body.get("stream") is not True:
            self._send_json(400, {"object": "error", "message": "the test double only streams", "code": 400})
            return
        inject_error, inject_bad_stream = self.fake.next_completion()
        if inject_error:
            status = behaviour.error_status
            self._send_json(status, {"object": "error", "message": "injected", "code": status})
            return
        self._stream(body, inject_bad_stream)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _event(self, payload: object) -> None:
        # Raw UTF-8 like vLLM's pydantic JSON, so that U+2028 in the token text reaches the client unescaped.
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        self._chunk(f"data: {data}\n\n".encode())

    def _stream(self, body: dict[str, Any], bad_stream: bool) -> None:
        behaviour = self.fake.behaviour
        chat = self.path == "/v1/chat/completions"
        tokens = min(behaviour.num_tokens, int(body.get("max_tokens", behaviour.num_tokens)))
        # Headers go out before scheduling, as with vLLM, so queue time shows up as TTFT.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not self.fake.scheduler.acquire(self.fake.closing):
            self.close_connection = True
            return
        slot = True

        def free_slot() -> None:
            nonlocal slot
            if slot:
                slot = False
                self.fake.scheduler.release()

        try:
            base = {"id": "cmpl-fake", "created": int(time.time()), "model": behaviour.model}
            if chat:
                self._event(
                    {
                        **base,
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                    }
                )
            started = time.monotonic()
            for index in range(tokens):
                # Absolute schedule: sleep overshoot on a busy machine does not accumulate.
                delay = started + behaviour.ttft_s + index * behaviour.itl_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                # Non-ASCII with a line separator: a client splitting with str.splitlines() breaks here.
                text = f" tök{index}\u2028"
                choice: dict[str, Any] = {
                    "index": 0,
                    "finish_reason": "length" if index == tokens - 1 else None,
                }
                if chat:
                    choice["delta"] = {"content": text}
                else:
                    choice["text"] = text
                self._event(
                    {
                        **base,
                        "object": "chat.completion.chunk" if chat else "text_completion",
                        "choices": [choice],
                    }
                )
                if bad_stream:
                    self._event("{not json")
                    break
            else:
                free_slot()
                if (body.get("stream_options") or {}).get("include_usage"):
                    self._event(
                        {
                            **base,
                            "choices": [],
                            "usage": {
                                "prompt_tokens": 5,
                                "completion_tokens": tokens,
                                "total_tokens": tokens + 5,
                            },
                        }
                    )
                self._event("[DONE]")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (timeout or cancellation); free the slot and drop the connection.
            self.close_connection = True
        finally:
            free_slot()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake vLLM test double on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8000)
    for name, default in vars(Behaviour()).items():
        if isinstance(default, bool):
            parser.add_argument(f"--{name.replace('_', '-')}", action="store_true")
        elif name != "api_key":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = vars(parser.parse_args())
    port = args.pop("port")
    with FakeVLLM(Behaviour(**args), port=port) as fake:
        print(f"fake vLLM (test double) listening on {fake.url}; Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
