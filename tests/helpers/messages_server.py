"""A Messages API server on 127.0.0.1 for the claude advisor's tests: the real anthropic SDK talks
to it over real HTTP (ANTHROPIC_BASE_URL). Each POST /v1/messages takes the next scripted reply:

  ("tool", INPUT)          a tool_use of propose_policy with INPUT as the document
  ("call", NAME, INPUT)    a tool_use of another tool (the read-only ones)
  ("text", TEXT)           a plain text answer, no tool
  ("status", CODE)         an API error with that HTTP status (retry-after-ms: 10)
  ("status", CODE, HEADERS) the same, with these headers instead (retry-after: 60, say)
  ("sleep", SECONDS)       answer nothing for that long, then a 500
  ("raw", BYTES)           a 200 whose body is BYTES as they are (not JSON, or not a message)
  ("huge", N, DECLARED)    a 200 whose body is N bytes of a JSON string, its Content-Length
                           given (DECLARED) or not (read until the server closes); `sent`
                           counts the bytes the client took before it hung up

When the script runs out, every further request gets a 500. Every request body is kept, parsed,
in `requests`, for the test to read what the model was shown.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MessagesServer:
    def __init__(self, script: list[tuple]) -> None:
        self.script = list(script)
        self.requests: list[dict] = []
        self.sent = 0
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                if self.path.split("?")[0] != "/v1/messages":
                    self._send(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
                    return
                request = json.loads(body)
                with server.lock:
                    server.requests.append(request)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    step = server.script.pop(0) if server.script else ("status", 500)
                kind = step[0]
                if kind == "sleep":
                    time.sleep(step[1])
                    kind, step = "status", ("status", 500)
                if kind == "status":
                    code = step[1]
                    kinds = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
                    self._send(code, {"type": "error", "error": {"type": kinds.get(code, "api_error"),
                                                                 "message": f"scripted {code}"}},
                               step[2] if len(step) > 2 else {"retry-after-ms": "10"})
                    return
                if kind == "huge":
                    self._huge(step[1], step[2])
                    return
                if kind == "raw":
                    try:
                        self.send_response(200)
                        self.send_header("content-type", "application/json")
                        self.send_header("content-length", str(len(step[1])))
                        self.end_headers()
                        self.wfile.write(step[1])
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                if kind == "text":
                    content = [{"type": "text", "text": step[1]}]
                    stop = "end_turn"
                else:
                    name, arguments = ("propose_policy", step[1]) if kind == "tool" else (step[1], step[2])
                    content = [{"type": "tool_use", "id": f"toolu_{len(server.requests):04d}", "name": name,
                                "input": arguments}]
                    stop = "tool_use"
                prompt_tokens = math.ceil(len(body) / 4)
                self._send(200, {
                    "id": f"msg_{len(server.requests):04d}", "type": "message", "role": "assistant",
                    "model": request.get("model"), "content": content, "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": 50 + len(json.dumps(content)) // 4,
                              "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
                })

            def _huge(self, size: int, declared: bool) -> None:
                chunk = b"x" * (1 << 16)
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    if declared:
                        self.send_header("content-length", str(size + 2))
                    else:
                        self.send_header("connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    self.wfile.write(b'"')
                    for _ in range(size // len(chunk)):
                        self.wfile.write(chunk)
                        with server.lock:
                            server.sent += len(chunk)
                    self.wfile.write(b'"')
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, code: int, payload: dict, extra: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.send_header("request-id", "req_test")
                    for key, value in (extra or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> MessagesServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def user_text(self, index: int = 0) -> str:
        content = self.requests[index]["messages"][0]["content"]
        return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)

    def system_text(self, index: int = 0) -> str:
        system = self.requests[index]["system"]
        return system if isinstance(system, str) else "".join(b["text"] for b in system)
