"""A plugin for the tests' forward proxy (proxy.py): every `*.test` name (RFC 2606:
never a real host) is served on loopback. So a client can ask the proxy for
`https://api.altmetric.test:PORT/...` as it would for the real API, with a host name
no resolver knows, which proves the request went through the proxy."""

from __future__ import annotations

from proxy.http.proxy import HttpProxyBasePlugin


class LoopbackTestNames(HttpProxyBasePlugin):
    def resolve_dns(self, host: str, port: int) -> tuple[str | None, None]:
        return ("127.0.0.1" if host.endswith(".test") else None), None
