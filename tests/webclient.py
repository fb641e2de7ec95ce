"""A tiny HTTP client for the web page's tests: one cookie jar, forms as a browser sends
them, redirects not followed (a test checks each 303). Blocking: call it from a worker thread
(trio.to_thread.run_sync) when the server runs in the test's own trio loop."""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    def csrf(self) -> str:
        found = _CSRF.search(self.body)
        assert found is not None, f"no CSRF field in the page:\n{self.body[:500]}"
        return found.group(1)


@dataclass
class WebClient:
    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookie_headers: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            sent = dict(headers or {})
            if self.cookies:
                sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            text = response.read().decode()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    self.set_cookie_headers.append(value)
                    pair = value.split(";", 1)[0]
                    key, _, val = pair.partition("=")
                    if "max-age=0" in value.lower() or val in ("", "null"):
                        self.cookies.pop(key, None)
                    else:
                        self.cookies[key] = val
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                         text)
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, str]) -> Reply:
        return self.request("POST", path, urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})

    def submit(self, page: str, action: str, fields: dict[str, str]) -> Reply:
        """GET `page` for its CSRF token, then POST the form to `action`."""
        token = self.get(page).csrf()
        return self.post(action, {"csrf": token, **fields})
