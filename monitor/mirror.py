"""A replay server for the offline mirror (``../shared/sites``), one snapshot at a time.

Clients reach it through the ``--via`` contract (see crawler/via.py): the real URL's path and
query go in the request line, its scheme and host in ``X-Original-Scheme`` / ``X-Original-Host``.
Without those headers the ``Host`` header and ``http`` are used.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from monitor.faults import Answer, FaultPlan

DEFAULT_MIRROR_PATH = Path(
    os.environ.get("DTMON_MIRROR") or Path(__file__).resolve().parents[2] / "shared" / "sites"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_STREAM_CHUNK = 1024 * 1024
_TIMEOUT_FAULT_SECONDS = 300


class MirrorError(RuntimeError):
    """The mirror folder is missing, malformed or lacks the requested snapshot."""


@dataclass(frozen=True)
class Resource:
    """One listed response: what a request for ``method url`` (+ ``form``) gets."""

    url: str
    method: str
    status: int
    headers: dict[str, str]
    file: Path | None
    snapshots: frozenset[str]
    form: dict[str, str] = field(default_factory=dict)

    def accepts_form(self, fields: dict[str, list[str]]) -> bool:
        """Whether a POST body carries at least this resource's form fields with their values."""
        return all(value in fields.get(name, []) for name, value in self.form.items())


@dataclass(frozen=True)
class RequestRecord:
    """One request the mirror answered."""

    method: str
    url: str
    status: int
    conditional: bool


def normalize_url(url: str) -> str:
    """The lookup key of a URL: lower-case scheme and host, no default port, no fragment."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if parts.port and parts.port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{parts.port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def load_manifest(root: Path) -> tuple[list[str], list[Resource]]:
    """Snapshots and resources of the mirror folder ``root``; MirrorError if it is unusable."""
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise MirrorError(f"no manifest.json in {root}: not an offline mirror folder")
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
        resources = [_resource(root, entry) for entry in manifest["resources"]]
        snapshots = list(manifest["snapshots"])
    except (ValueError, KeyError, TypeError) as exc:
        raise MirrorError(f"malformed {manifest_path}: {exc!r}") from exc
    missing = [str(r.file) for r in resources if r.file and not r.file.is_file()]
    if missing:
        raise MirrorError(f"{len(missing)} body files listed in {manifest_path} are missing, "
                          f"e.g. {missing[0]}")
    return snapshots, resources


def _resource(root: Path, entry: dict[str, Any]) -> Resource:
    return Resource(
        url=normalize_url(entry["url"]),
        method=entry["method"].upper(),
        status=int(entry["status"]),
        headers=dict(entry["headers"]),
        file=root / entry["file"] if entry.get("file") else None,
        snapshots=frozenset(entry["snapshots"]),
        form=dict(entry.get("form") or {}),
    )


class _HttpServer(ThreadingHTTPServer):
    """A threading HTTP server that stays quiet when a client drops its connection (a killed
    crawler, a time-out): that is the client's business, not a server error."""

    daemon_threads = True
    # socketserver's default backlog is 5: a crawl opening dozens of connections at once had
    # its SYNs dropped and retried a second or more later (TcpExtListenOverflows), stalling it.
    request_queue_size = socket.SOMAXCONN

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class MirrorServer:
    """Serve the mirror folder ``root`` on ``host:port`` (0 = any free port) in a thread.

    ``requests`` logs every answered request; ``set_snapshot`` switches moments while running;
    ``faults`` (see monitor/faults.py) turns chosen URLs hostile.
    """

    def __init__(
        self,
        root: Path = DEFAULT_MIRROR_PATH,
        snapshot: str = "t1",
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[RequestRecord], None] | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        self.root = Path(root)
        self.faults = faults or FaultPlan()
        self.stopping = threading.Event()
        self.host, self.port = host, port
        self.snapshot = snapshot
        self.requests: list[RequestRecord] = []
        self._on_request = on_request
        self._snapshots: list[str] = []
        self._resources: list[Resource] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:8765``."""
        return f"http://{self.host}:{self.port}"

    @property
    def hosts(self) -> set[str]:
        """The hosts this mirror serves (from its manifest)."""
        _, resources = load_manifest(self.root)
        return {urlsplit(resource.url).hostname or "" for resource in resources}

    def start(self) -> MirrorServer:
        """Validate the folder and the snapshot, then serve in a background thread."""
        self._snapshots, self._resources = load_manifest(self.root)
        self.set_snapshot(self.snapshot)
        self.stopping.clear()
        self._httpd = _HttpServer((self.host, self.port), _handler_for(self))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True, name=f"mirror:{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def set_snapshot(self, name: str) -> None:
        """Answer as the sites were at moment ``name`` (e.g. ``t2``) from now on."""
        if self._snapshots and name not in self._snapshots:
            raise MirrorError(f"unknown snapshot {name!r}; {self.root} has {self._snapshots}")
        self.snapshot = name

    def clear_log(self) -> None:
        """Forget the requests logged so far."""
        with self._lock:
            self.requests.clear()

    def find(self, method: str, url: str, form: dict[str, list[str]] | None = None
             ) -> Resource | None:
        """The resource answering ``method url`` (POST: with ``form``) in the current snapshot."""
        key, method = normalize_url(url), ("GET" if method == "HEAD" else method)
        for resource in self._resources:
            if (resource.url == key and resource.method == method
                    and self.snapshot in resource.snapshots
                    and (method != "POST" or resource.accepts_form(form or {}))):
                return resource
        return None

    def home_page(self, url: str) -> tuple[dict[str, str], bytes] | None:
        """Headers and body of ``url``'s host's home page: its HTML page of shortest URL."""
        host = urlsplit(normalize_url(url)).netloc
        pages = [r for r in self._resources
                 if urlsplit(r.url).netloc == host and r.method == "GET" and r.status == 200
                 and self.snapshot in r.snapshots and r.file is not None
                 and "html" in r.headers.get("Content-Type", "")]
        if not pages:
            return None
        home = min(pages, key=lambda r: (len(r.url), r.url))
        return home.headers, home.file.read_bytes() if home.file else b""

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)
        if self._on_request is not None:
            self._on_request(record)


def is_not_modified(resource: Resource, if_none_match: str | None,
                    if_modified_since: str | None) -> bool:
    """RFC 9110 conditional GET: If-None-Match wins; otherwise compare If-Modified-Since."""
    if resource.status != HTTPStatus.OK:
        return False
    etag = resource.headers.get("ETag")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return etag is not None and ("*" in tags or etag.removeprefix("W/") in tags)
    modified = resource.headers.get("Last-Modified")
    if if_modified_since is None or modified is None:
        return False
    try:
        return parsedate_to_datetime(modified) <= parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False


def _handler_for(mirror: MirrorServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``mirror``."""

    class MirrorHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            self._answer(with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(with_body=False)

        def do_POST(self) -> None:  # noqa: N802
            self._answer(with_body=True)

        def _real_url(self) -> str:
            scheme = self.headers.get("X-Original-Scheme") or "http"
            host = self.headers.get("X-Original-Host") or self.headers.get("Host") or ""
            return f"{scheme}://{host}{self.path}"

        def _form(self) -> dict[str, list[str]]:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)

        def _answer(self, with_body: bool) -> None:
            url = self._real_url()
            form = self._form()
            resource = mirror.find(self.command, url, form)
            inm = self.headers.get("If-None-Match")
            ims = self.headers.get("If-Modified-Since")
            if resource is None:
                status, headers, body = 404, {"Content-Type": "text/plain"}, b"not in mirror\n"
            elif is_not_modified(resource, inm, ims):
                status, body = 304, b""
                headers = {k: v for k, v in resource.headers.items()
                           if k in ("ETag", "Last-Modified")}
            else:
                status, headers = resource.status, resource.headers
                body = resource.file.read_bytes() if resource.file else b""
            answer = mirror.faults.apply(url, Answer(status, headers, body), mirror.home_page)
            # Logged before answering, so a client that got its answer finds it in the log.
            mirror._record(RequestRecord(self.command, url, answer.status,
                                         conditional=inm is not None or ims is not None))
            self._deliver(answer, with_body)

        def _deliver(self, answer: Answer, with_body: bool) -> None:
            """Send ``answer`` the way its faults say (normally: all of it)."""
            if answer.delay and mirror.stopping.wait(answer.delay):
                return
            if answer.delivery == "timeout":
                mirror.stopping.wait(_TIMEOUT_FAULT_SECONDS)
                self.close_connection = True
                return
            if answer.delivery == "reset":
                # SO_LINGER with a zero timeout: close() sends a TCP RST.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            body = answer.body if with_body else b""
            if answer.delivery in ("truncate-close", "truncate-chunked"):
                self._truncate_undeclared(answer, body)
                return
            length = answer.stream_bytes or len(answer.body)
            self._send(answer.status, answer.headers, length)
            if answer.delivery == "truncate":
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
            elif answer.delivery == "stream" and with_body:
                self._stream_filler(answer.stream_bytes)
            else:
                self.wfile.write(body)

        def _send(self, status: int, headers: dict[str, str], length: int | None) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if status != HTTPStatus.NOT_MODIFIED and length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()

        def _truncate_undeclared(self, answer: Answer, body: bytes) -> None:
            """Half the body with no declared length: ended by closing the connection, or
            as a chunked body whose final chunk never comes."""
            half = body[: len(body) // 2]
            chunked = answer.delivery == "truncate-chunked"
            extra = {"Transfer-Encoding": "chunked"} if chunked else {"Connection": "close"}
            self._send(answer.status, {**answer.headers, **extra}, None)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half) if chunked else half)
            self.close_connection = True

        def _stream_filler(self, size: int) -> None:
            chunk = (b"<p>" + b"x" * (_STREAM_CHUNK - 8) + b"</p>\n")[:_STREAM_CHUNK]
            try:
                for offset in range(0, size, _STREAM_CHUNK):
                    self.wfile.write(chunk[: min(_STREAM_CHUNK, size - offset)])
            except OSError:
                self.close_connection = True  # the client gave up, as it should

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Silent: requests are reported through ``MirrorServer.requests``/``on_request``."""

    return MirrorHandler
