"""Which requests the REST server answers at all: Host, Origin and Content-Type checks.

Three browser attacks on a server that trusts being on 127.0.0.1, and the check that stops each:

- DNS rebinding: a page at http://evil.example:8501 whose name then resolves to 127.0.0.1 is
  same-origin with this server and can read /cnnapp/models, metadata, predictions. Its requests
  carry `Host: evil.example:8501`, so the Host must name this server: by default 127.0.0.1,
  localhost, [::1] and the address it is bound to, plus the names given with `--allowed_hosts`.
  Bound to all interfaces (0.0.0.0 / ::) without `--allowed_hosts`, any Host is accepted: clients
  then reach the server by names it cannot know (the machine's name, a load balancer's, Docker's
  port mapping), and binding there is the choice to let the network in. `--allowed_hosts` then
  restricts it again; `--allowed_hosts '*'` accepts any Host wherever the server is bound.
- Cross-site POST (CSRF): any page can make a browser POST to http://127.0.0.1:8501 without a
  preflight when the Content-Type is one of the three "simple" ones (text/plain,
  application/x-www-form-urlencoded, multipart/form-data). Browsers put an `Origin` header on every
  such POST, so a POST whose Origin is neither this server (the same scheme-less host:port as the
  Host header: the served page itself) nor an allowed host is refused (403).
- Non-JSON bodies: a POST with Content-Type text/plain, a form type or multipart/form-data that
  carries an Origin (a browser sent it) is refused (415); the page sends application/json. Without
  an Origin the same types are accepted, because that is how ordinary clients of TF Serving send
  JSON: `curl -d` (and wget, Python's urllib, Java's HttpURLConnection) label it
  application/x-www-form-urlencoded, Node's fetch labels a string body text/plain, and TF Serving
  parses whatever arrives as JSON. Keras-io's `requests.post(url, json=...)` sends application/json,
  `requests.post(url, data=...)` and httpx's `content=` send no Content-Type: all accepted. Any other
  type that is not JSON (application/xml, image/png, ...) is refused (415) with or without Origin.

Requests without a Host (HTTP/1.0) cannot come from a rebinding browser and are accepted.

>>> guard = RequestGuard(("localhost", "127.0.0.1", "::1"))
>>> guard.refusal("GET", [(b"host", b"evil.example:8501")])[0]
403
"""

from __future__ import annotations

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
ANY_HOST = "*"
_SIMPLE_TYPES = {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
_JSON_TYPES = {"application/json", "text/json"}


def host_name(value: str) -> str:
    """'Example.COM:8501' -> 'example.com'; '[::1]:8501' -> '::1'; a trailing root dot dropped."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def allowed_hosts_for(bound_host: str, extra: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """The Host names a server bound to `bound_host` answers to (see the module docstring):
    loopback names, the bound address, `extra`; any (`*`) when bound to all interfaces and no
    `extra` is given."""
    extra = tuple(h.strip() for h in extra if h.strip())
    if bound_host in ("0.0.0.0", "::", "") and not extra:
        return (ANY_HOST,)
    return tuple(dict.fromkeys((*LOOPBACK_HOSTS, *((bound_host,) if bound_host not in ("0.0.0.0", "::", "")
                                                     else ()), *extra)))


class RequestGuard:
    """`refusal(method, headers)` -> None, or (status, message) for a request not to answer."""

    def __init__(self, allowed_hosts: tuple[str, ...] | list[str], *, allow_cross_origin: bool = False):
        # allow_cross_origin: --rest_api_enable_cors_support asks for browsers on other origins to call
        # the API, so their POSTs are not refused (the Host check still holds).
        self.allow_cross_origin = allow_cross_origin
        names = {host_name(h) for h in allowed_hosts}
        self.any_host = ANY_HOST in names
        self.names = names - {ANY_HOST}
        self.shown = ", ".join(sorted(self.names)) or "(none)"

    def refusal(self, method: str, headers) -> tuple[int, str] | None:
        host = origin = content_type = None
        for key, value in headers:
            if key == b"host":
                host = value.decode("latin-1")
            elif key == b"origin":
                origin = value.decode("latin-1")
            elif key == b"content-type":
                content_type = value.decode("latin-1")
        if host is not None and not self.any_host and host_name(host) not in self.names:
            return 403, (f"Host {host[:100]!r} is not one this server answers to ({self.shown}); "
                         f"add the name with --allowed_hosts")
        if method in ("GET", "HEAD"):
            return None
        if origin is not None and not self.allow_cross_origin and not self._same_or_allowed(origin, host):
            return 403, (f"cross-origin {method} refused: Origin {origin[:100]!r} is neither this server "
                         f"(Host {str(host)[:100]!r}) nor an allowed host ({self.shown}; --allowed_hosts)")
        if content_type is not None:
            media_type = content_type.split(";", 1)[0].strip().lower()
            if media_type in _JSON_TYPES or media_type.endswith("+json"):
                return None
            if media_type not in _SIMPLE_TYPES or origin is not None:
                return 415, (f"Content-Type {content_type[:100]!r} is not JSON: send the body as "
                             f"application/json (or without a Content-Type)")
        return None

    def _same_or_allowed(self, origin: str, host: str | None) -> bool:
        scheme, sep, netloc = origin.strip().lower().partition("://")
        if not sep or scheme not in ("http", "https") or not netloc:
            return False        # "null" (sandboxed frames, file:// pages) and anything odd
        if host is not None and netloc == host.strip().lower():
            return True         # the page this server served, under whatever name it was opened
        return host_name(netloc) in self.names
