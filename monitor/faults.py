"""Fault injection for the mirror server: the hostile web, on demand, per URL pattern.

A fault plan maps URL patterns (shell globs over the real URL, e.g. ``https://vov.vn/*.vov``)
to faults. Written inline as ``PATTERN=FAULT[,FAULT…]`` (the last ``=`` separates them, so
patterns may hold query strings), or as a YAML/JSON file mapping each pattern to a fault or a
list of faults. Faults, with their optional ``:`` arguments:

``5xx:N`` the first N requests of each matching URL get 503 (default N=2);
``429:N:SECONDS`` the first N get 429 with ``Retry-After: SECONDS`` (defaults 1 and 1);
``slow:SECONDS`` answer after a delay; ``timeout`` never answer (until the server stops);
``reset`` reset the connection (TCP RST) without answering;
``truncate`` announce the full Content-Length, send half the body, close; ``truncate:close``
no Content-Length (``Connection: close``), half the body, close; ``truncate:chunked`` chunked
transfer, half the body in one chunk, close without the final chunk;
``interstitial`` an anti-bot challenge page ("Just a moment...") in place of the page;
``redirect-loop`` 302 to the same URL with an ever-growing ``dtmon_loop`` parameter;
``redirect:URL`` 302 to URL (another host, an IP literal, a cloud metadata address…);
``huge:MB`` a 200 HTML body of MB megabytes (default 50), streamed;
``gzip-bomb:MB`` ``Content-Encoding: gzip``: a small body that inflates to MB (default 200);
``malformed-html`` the page as tag soup (closing tags dropped, junk bytes, NULs);
``malformed-xml`` the document cut in the middle and ended with junk;
``xml-bomb`` a "billion laughs" entity expansion in the shape of the document (feed/sitemap);
``xxe`` an external entity (``file:///etc/passwd``) where the document's links go;
``charset:LABEL`` the Content-Type charset replaced by LABEL; ``charset:none`` drops every
charset label (header and meta);
``home`` the host's home/listing page served in place of the page;
``home:redirect`` a 302 to the host's root.
"""

from __future__ import annotations

import fnmatch
import re
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml

MEGABYTE = 1024 * 1024
_CHARSET_PARAM = re.compile(r";\s*charset\s*=\s*[\"']?[\w.:-]+[\"']?", re.I)
_META_CHARSET = re.compile(
    rb"<meta[^>]+charset\s*=\s*[\"']?[\w.:-]+[^>]*>", re.I)
_XML_ROOT = re.compile(rb"<(rss|feed|urlset|sitemapindex|rdf:RDF)\b", re.I)
_CLOSING_TAG = re.compile(rb"</(p|span|a|li|td|tr|b|i|em|strong)>", re.I)
_LOOP_PARAM = "dtmon_loop"


class FaultSpecError(ValueError):
    """A fault specification that cannot be used; the message says which part and why."""


@dataclass
class Answer:
    """What the mirror is about to send; faults rewrite it.

    ``delivery``: ``normal``, ``reset``, ``truncate`` (also ``truncate-close`` and
    ``truncate-chunked``), ``timeout`` or ``stream`` (a body of ``stream_bytes`` filler bytes
    written in chunks).
    """

    status: int
    headers: dict[str, str]
    body: bytes
    delivery: str = "normal"
    delay: float = 0.0
    stream_bytes: int = 0


@dataclass(frozen=True)
class Fault:
    """One fault kind with its arguments (strings as written)."""

    kind: str
    args: tuple[str, ...] = ()

    def number(self, index: int, default: float) -> float:
        """Argument ``index`` as a number, ``default`` when absent."""
        return float(self.args[index]) if len(self.args) > index else default

    def __str__(self) -> str:
        return ":".join((self.kind, *self.args))


@dataclass(frozen=True)
class FaultRule:
    """Faults applied to every URL matching ``pattern`` (a shell glob)."""

    pattern: str
    faults: tuple[Fault, ...]

    def matches(self, url: str) -> bool:
        """Whether ``url`` (scheme://host/path?query) matches this rule's pattern."""
        return fnmatch.fnmatchcase(url, self.pattern)


HomePage = Callable[[str], tuple[dict[str, str], bytes] | None]


@dataclass
class FaultPlan:
    """The rules of a fault run, and how often each URL has been hit so far."""

    rules: list[FaultRule] = field(default_factory=list)
    _hits: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def faults_for(self, url: str) -> list[Fault]:
        """Every fault of every rule matching ``url``, in order."""
        return [fault for rule in self.rules if rule.matches(url) for fault in rule.faults]

    def apply(self, url: str, answer: Answer, home_page: HomePage) -> Answer:
        """``answer`` rewritten by the faults matching ``url`` (hit counts advance)."""
        faults = self.faults_for(url)
        if not faults:
            return answer
        with self._lock:
            self._hits[url] += 1
            hit = self._hits[url]
        for fault in faults:
            answer = _APPLY[fault.kind](fault, url, hit, answer, home_page)
        return answer


# ---------------------------------------------------------------------------- parsing


def parse_fault(text: str) -> Fault:
    """One fault such as ``429:2:5``; FaultSpecError for an unknown kind or bad argument."""
    kind, *args = text.strip().split(":")
    kind = kind.strip().lower()
    if kind not in _APPLY:
        raise FaultSpecError(f"unknown fault {kind!r}; known: {', '.join(sorted(_APPLY))}")
    fault = Fault(kind, tuple(arg.strip() for arg in args))
    if kind == "truncate" and fault.args[:1] not in ((), ("close",), ("chunked",)):
        raise FaultSpecError(f"fault {text!r}: truncate takes no argument, close or chunked")
    if kind not in ("charset", "home", "redirect", "truncate"):
        try:
            [float(arg) for arg in fault.args]
        except ValueError:
            raise FaultSpecError(f"fault {text!r}: arguments must be numbers") from None
    return fault


def parse_rule(text: str) -> FaultRule:
    """An inline rule ``PATTERN=FAULT[,FAULT…]``."""
    pattern, sep, faults = text.strip().rpartition("=")
    if not sep or not pattern or not faults.strip():
        raise FaultSpecError(f"fault rule {text!r}: expected PATTERN=FAULT[,FAULT...]")
    return FaultRule(pattern, tuple(parse_fault(f) for f in faults.split(",") if f.strip()))


def load_fault_plan(specs: Iterable[str]) -> FaultPlan:
    """A plan from ``--faults`` values: each a YAML/JSON file or one inline rule."""
    rules: list[FaultRule] = []
    for spec in specs:
        path = Path(spec)
        rules += _rules_from_file(path) if path.is_file() else [parse_rule(spec)]
    return FaultPlan(rules)


def _rules_from_file(path: Path) -> list[FaultRule]:
    try:
        data: Any = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise FaultSpecError(f"cannot read the fault file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise FaultSpecError(f"{path}: expected a mapping of URL pattern to fault(s)")
    rules = []
    for pattern, faults in data.items():
        items = [faults] if isinstance(faults, str) else faults
        if not isinstance(items, list) or not all(isinstance(f, str) for f in items):
            raise FaultSpecError(f"{path}: {pattern!r} must map to a fault or a list of faults")
        rules.append(FaultRule(str(pattern), tuple(parse_fault(f) for f in items)))
    return rules


# ---------------------------------------------------------------------------- faults


def _server_error(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    if hit > fault.number(0, 2):
        return answer
    return Answer(503, {"Content-Type": "text/plain"}, b"service unavailable\n")


def _too_many(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    if hit > fault.number(0, 1):
        return answer
    seconds = f"{fault.number(1, 1):g}"
    return Answer(429, {"Content-Type": "text/plain", "Retry-After": seconds}, b"slow down\n")


def _slow(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    return replace(answer, delay=answer.delay + fault.number(0, 5))


def _delivery(kind: str) -> Callable[..., Answer]:
    def apply(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
        return replace(answer, delivery=kind)
    return apply


def _truncate(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    how = fault.args[0] if fault.args else ""
    return replace(answer, delivery=f"truncate-{how}" if how else "truncate")


_CHALLENGE_PAGE = (b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
                   b"<div id=\"challenge-form\"><p>Checking your browser before accessing the "
                   b"site.</p><script src=\"/cdn-cgi/challenge-platform/h/g/orchestrate.js\">"
                   b"</script></div></body></html>")


def _interstitial(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    return Answer(200, {"Content-Type": "text/html; charset=utf-8"}, _CHALLENGE_PAGE)


def _redirect_loop(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != _LOOP_PARAM]
    loop = int(dict(parse_qsl(parts.query)).get(_LOOP_PARAM, "0") or 0) + 1
    target = urlunsplit(("", "", parts.path, urlencode([*query, (_LOOP_PARAM, loop)]), ""))
    return Answer(302, {"Location": target, "Content-Type": "text/html"}, b"")


def _redirect(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    return Answer(302, {"Location": ":".join(fault.args), "Content-Type": "text/html"}, b"")


def _huge(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    size = int(fault.number(0, 50) * MEGABYTE)
    return Answer(200, {"Content-Type": "text/html; charset=utf-8"}, b"", delivery="stream",
                  stream_bytes=size)


def _gzip_bomb(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    headers = {"Content-Type": answer.headers.get("Content-Type", "text/html"),
               "Content-Encoding": "gzip"}
    return Answer(200, headers, gzip_bomb(int(fault.number(0, 200))))


@lru_cache(maxsize=4)
def gzip_bomb(megabytes: int) -> bytes:
    """A gzip stream of ``megabytes`` MB of zeros (about 1000 times smaller), built in chunks."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    chunk = bytes(MEGABYTE)
    parts = [compressor.compress(chunk) for _ in range(megabytes)]
    return b"".join([*parts, compressor.flush()])


def _malformed_html(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    soup = _CLOSING_TAG.sub(b"", answer.body)
    soup = soup.replace(b"<body", b"<<body \x00 <body", 1)
    soup = soup.replace(b"</head>", b"<div class=\"x\"\" ><p><b><i>\xff\xfe</head>", 1)
    return replace(answer, body=soup + b"<table><tr><td><div <<<")


def _malformed_xml(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    return replace(answer, body=answer.body[: len(answer.body) // 2] + b"<item><link>&&<</")


def _xml_bomb(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    entities = f'<!ENTITY lol0 "lol">{lol}'
    return replace(answer, body=_xml_with_entities(answer.body, entities, "&lol9;", url))


def _xxe(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    entities = '<!ENTITY xxe SYSTEM "file:///etc/passwd">'
    return replace(answer, body=_xml_with_entities(answer.body, entities, "&xxe;", url))


def _xml_with_entities(body: bytes, entities: str, reference: str, url: str) -> bytes:
    """A small document of the same kind as ``body`` whose links use ``reference``."""
    found = _XML_ROOT.search(body)
    root = found.group(1).decode() if found else "rss"
    base = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
    link = f"{base}/{reference}"
    if root in ("urlset", "sitemapindex"):
        child = "url" if root == "urlset" else "sitemap"
        inner = f"<{child}><loc>{link}</loc></{child}>"
        attrs = ' xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
    else:
        root = "rss"
        inner = f"<channel><title>{reference}</title><item><title>{reference}</title>" \
                f"<link>{link}</link></item></channel>"
        attrs = ' version="2.0"'
    return (f'<?xml version="1.0"?>\n<!DOCTYPE {root} [{entities}]>\n'
            f"<{root}{attrs}>{inner}</{root}>").encode()


def _charset(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    label = fault.args[0] if fault.args else "none"
    headers = dict(answer.headers)
    content_type = _CHARSET_PARAM.sub("", headers.get("Content-Type", "text/html"))
    body = answer.body
    if label.lower() == "none":
        body = _META_CHARSET.sub(b"", body)
    else:
        content_type += f"; charset={label}"
    headers["Content-Type"] = content_type
    return replace(answer, headers=headers, body=body)


def _home(fault: Fault, url: str, hit: int, answer: Answer, home: HomePage) -> Answer:
    if fault.args and fault.args[0] == "redirect":
        return Answer(302, {"Location": "/", "Content-Type": "text/html"}, b"")
    page = home(url)
    if page is None:
        return answer
    headers, body = page
    return Answer(200, dict(headers), body)


_APPLY: dict[str, Callable[[Fault, str, int, Answer, HomePage], Answer]] = {
    "5xx": _server_error,
    "429": _too_many,
    "slow": _slow,
    "timeout": _delivery("timeout"),
    "reset": _delivery("reset"),
    "truncate": _truncate,
    "interstitial": _interstitial,
    "redirect-loop": _redirect_loop,
    "redirect": _redirect,
    "huge": _huge,
    "gzip-bomb": _gzip_bomb,
    "malformed-html": _malformed_html,
    "malformed-xml": _malformed_xml,
    "xml-bomb": _xml_bomb,
    "xxe": _xxe,
    "charset": _charset,
    "home": _home,
}
