"""A JSON-RPC fault proxy: sits between the oracle nodes and anvil and misbehaves on command.

The nodes are configured with the proxy's URL instead of anvil's; the harness switches the proxy's
mode at run time to inject the faults a real RPC provider shows:

- `pass`   forward every request unchanged;
- `delay`  forward after `delay_ms` (a slow provider);
- `drop`   close the connection without answering (a lost request: the client sees a transport error);
- `error`  answer HTTP 503 with a JSON-RPC error body (an overloaded provider);
- `stale`  answer `eth_blockNumber` and the tagged forms of `eth_getBlockByNumber` ("latest",
  "safe", "finalized", "pending") with the answers recorded just before the mode was entered, and
  `null` for blocks above that head (a provider whose node stopped following the chain). Other
  methods pass through: a lagging node still serves the state it has.

Independently of the mode, `max_log_range` (when set) refuses an `eth_getLogs` that spans more blocks
than that, with the error answer a provider that caps log queries gives (code -32005).

The proxy runs on 127.0.0.1 in a thread of the harness's own process (it is not a separate process
to stop), and counts what it did per mode so the report can show that each fault really happened.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from crossdvp.errors import CrossDvpError

__all__ = ["ProxyMode", "ProxyStats", "RpcFaultProxy"]

_TAGS = frozenset({"latest", "safe", "finalized", "pending"})
_UPSTREAM_TIMEOUT_S = 30.0


class ProxyMode(StrEnum):
    PASS = "pass"  # noqa: S105 (a mode name, not a password)
    DELAY = "delay"
    DROP = "drop"
    ERROR = "error"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """How many requests the proxy handled in each mode (a fault counted only if a request met it)."""

    by_mode: dict[str, int]

    def faulted(self) -> int:
        return sum(n for mode, n in self.by_mode.items() if mode != ProxyMode.PASS)


class RpcFaultProxy:
    """An HTTP JSON-RPC proxy to `upstream_url` on 127.0.0.1:`port` (0 = a free port).

    Use as a context manager or call start()/stop(). Raises CrossDvpError from `set_mode` for a
    negative delay, and from `start` if the port cannot be bound.
    """

    def __init__(self, upstream_url: str, *, port: int = 0, max_log_range: int | None = None) -> None:
        self.upstream_url = upstream_url
        self.max_log_range = max_log_range
        self._requested_port = port
        self._lock = threading.Lock()
        self._mode = ProxyMode.PASS
        self._delay_ms = 0
        self._stale: dict[str, Any] = {}  # method/tag -> recorded JSON-RPC result
        self._stale_head: int | None = None
        self._counts: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> RpcFaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                proxy._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return  # the harness reports counts; per-request lines would drown the logs

        try:
            server = ThreadingHTTPServer(("127.0.0.1", self._requested_port), Handler)
        except OSError as exc:
            raise CrossDvpError(f"rpc proxy: cannot bind 127.0.0.1:{self._requested_port}: {exc}") from exc
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="rpc-fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> RpcFaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise CrossDvpError("rpc proxy is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control --------------------------------------------------------------------------------

    @property
    def mode(self) -> ProxyMode:
        return self._mode

    def set_mode(self, mode: ProxyMode | str, *, delay_ms: int = 0) -> None:
        """Switch mode now. Entering `stale` records the upstream's current head answers first, so
        every later head query sees that moment. Raises CrossDvpError for a negative `delay_ms`, or
        if the upstream cannot be reached to record the stale answers."""
        mode = ProxyMode(mode)
        if delay_ms < 0:
            raise CrossDvpError(f"rpc proxy: delay_ms must be >= 0, got {delay_ms}")
        recorded: dict[str, Any] = {}
        head: int | None = None
        if mode is ProxyMode.STALE:
            for tag in _TAGS:
                recorded[f"eth_getBlockByNumber:{tag}"] = self._upstream_result(
                    "eth_getBlockByNumber", [tag, False]
                )
            # The head is the recorded "latest" block, so eth_blockNumber and it always agree.
            latest = recorded["eth_getBlockByNumber:latest"]
            recorded["eth_blockNumber"] = latest["number"]
            head = int(str(latest["number"]), 16)
        with self._lock:
            self._mode = mode
            self._delay_ms = delay_ms
            if mode is ProxyMode.STALE:
                self._stale, self._stale_head = recorded, head

    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(by_mode=dict(self._counts))

    # -- request handling -----------------------------------------------------------------------

    def _upstream(self, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(  # noqa: S310 (upstream is the harness's own anvil URL)
            self.upstream_url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=_UPSTREAM_TIMEOUT_S) as response:  # noqa: S310
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def _upstream_result(self, method: str, params: list[Any]) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        try:
            status, raw = self._upstream(body)
            answer = json.loads(raw)
        except (OSError, ValueError) as exc:
            raise CrossDvpError(f"rpc proxy: upstream {self.upstream_url} failed on {method}: {exc}") from exc
        if status != 200 or not isinstance(answer, dict) or "result" not in answer:
            raise CrossDvpError(f"rpc proxy: upstream {self.upstream_url} refused {method}: {answer!r}")
        return answer["result"]

    def _stale_answer(self, request: Any) -> dict[str, Any] | None:
        """The recorded answer for a head query, or None to forward it."""
        if not isinstance(request, dict):
            return None
        method, params = request.get("method"), request.get("params") or []
        result: Any
        if method == "eth_blockNumber":
            result = self._stale.get("eth_blockNumber")
        elif method == "eth_getBlockByNumber" and params:
            tag = params[0]
            if isinstance(tag, str) and tag in _TAGS:
                result = self._stale.get(f"eth_getBlockByNumber:{tag}")
            elif isinstance(tag, str) and self._stale_head is not None and int(tag, 16) > self._stale_head:
                result = None  # a stale node does not know blocks above its head
            else:
                return None
        else:
            return None
        return {"jsonrpc": "2.0", "id": request.get("id"), "result": result}

    def _log_range_refusal(self, body: bytes) -> dict[str, Any] | None:
        """The error answer for an eth_getLogs over more than `max_log_range` blocks, else None."""
        if self.max_log_range is None:
            return None
        try:
            request = json.loads(body)
        except ValueError:
            return None
        if not isinstance(request, dict) or request.get("method") != "eth_getLogs":
            return None
        query = (request.get("params") or [{}])[0]
        bounds = []
        for key in ("fromBlock", "toBlock"):
            value = query.get(key, "latest") if isinstance(query, dict) else "latest"
            if isinstance(value, str) and not value.startswith("0x"):
                try:
                    value = "0x0" if value == "earliest" else self._upstream_result("eth_blockNumber", [])
                except CrossDvpError:
                    return None  # upstream down: forwarding shows the client what it would see directly
            bounds.append(int(str(value), 16))
        if bounds[1] - bounds[0] + 1 <= self.max_log_range:
            return None
        message = f"query exceeds max block range {self.max_log_range}"
        return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32005, "message": message}}

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        with self._lock:
            mode, delay_ms = self._mode, self._delay_ms
            self._counts[mode.value] += 1
        if mode is ProxyMode.DROP:
            handler.close_connection = True
            return  # no response at all: the client sees the connection closed
        if mode is ProxyMode.ERROR:
            request_id = None
            try:
                parsed = json.loads(body)
                request_id = parsed.get("id") if isinstance(parsed, dict) else None
            except ValueError:
                pass
            error = {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": -32603, "message": "chaos: injected"},
            }
            self._reply(handler, 503, json.dumps(error).encode())
            return
        if mode is ProxyMode.DELAY:
            time.sleep(delay_ms / 1000)
        refusal = self._log_range_refusal(body)
        if refusal is not None:
            with self._lock:
                self._counts["log_range_refused"] += 1
            self._reply(handler, 200, json.dumps(refusal).encode())
            return
        if mode is ProxyMode.STALE:
            try:
                answer = self._stale_answer(json.loads(body))
            except ValueError:
                answer = None
            if answer is not None:
                self._reply(handler, 200, json.dumps(answer).encode())
                return
        try:
            status, raw = self._upstream(body)
        except OSError:
            handler.close_connection = True  # upstream down: the client sees what it would see directly
            return
        self._reply(handler, status, raw)

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            pass  # the client gave up (timeout): nothing to answer
