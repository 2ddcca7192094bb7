"""URL identity: one canonical URL and one key for every form of a page's URL.

``canonical_url`` is the URL dtmon stores and fetches: the source's scheme and canonical host
(alias hosts and www/bare forms mapped to ``domains[0]``), default port, fragment and tracking
parameters dropped, percent-encoding as Scrapy sends it (w3lib's ``safe_url_string``), escapes in
upper case. Path case, trailing slashes, query order and query values are kept: servers may need
them. ``url_key`` adds what only identity needs: the query pairs sorted and, on sources with
case-insensitive paths (SharePoint, DotNetNuke), the path lower-cased.

courlan is used for scheme/host/port normalisation only: its query cleaning sorts parameters,
drops blank values, re-encodes values (``;`` becomes ``%3B``) and removes any parameter whose name
contains ``cid``, ``ref``, ``source``, ``session``, ``uid`` or ``keyword``, which breaks URLs of
portals such as ``?cid=12``; its path quoting encodes ``;@()+``.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from urllib.parse import SplitResult, unquote_plus, urljoin, urlsplit, urlunsplit

from courlan import normalize_url
from w3lib.url import safe_url_string

from crawler.sources import Registry, Source, SourceConfigError, bare_host, default_registry
from storage.schema import URL_LENGTH

log = logging.getLogger(__name__)

TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid",
    "_ga", "_gl", "mc_cid", "mc_eid", "ref_src", "ref_url", "_hsenc", "_hsmi", "mkt_tok", "zarsrc",
})
TRACKING_PREFIXES = ("utm_", "zarsrc")
# The crawler refuses longer URLs (counted as ``url_too_long``): every URL column holds them.
MAX_URL_LENGTH = URL_LENGTH
_ESCAPE_RE = re.compile(r"%[0-9a-fA-F]{2}")
_WEB_SCHEMES = ("http", "https")


def canonical_url(
    url: str, registry: Registry | None = None, page_canonical: str | None = None
) -> str:
    """The canonical form of ``url``; ``page_canonical`` (the page's rel=canonical, possibly
    relative) wins when it points inside the same source, except to the site's root from a
    deeper page (templates that declare the home page on every page). ``registry`` defaults
    to the default registry. Never raises: a string that is not an absolute http(s) URL comes
    back stripped."""
    text = url.strip() if isinstance(url, str) else ""
    try:
        registry = _registry(registry)
        result, source = _canonical(text, registry)
        if page_canonical and _is_web_url(text):
            declared = urljoin(text, page_canonical.strip())
            candidate, candidate_source = _canonical(declared, registry)
            if (_is_web_url(candidate) and _same_site(result, source, candidate, candidate_source)
                    and not _names_only_the_home(result, candidate)):
                result = candidate
        return result
    except ValueError:  # malformed netloc/port/IDNA (UnicodeError is a ValueError)
        return text


def url_key(url: str, registry: Registry | None = None) -> str:
    """The identity of ``url``: equal for every form of one page's URL (see the module doc)."""
    text = url.strip() if isinstance(url, str) else ""
    try:
        parts, source = _canonical_parts(text, _registry(registry))
        if parts is None:
            return text
        path = parts.path.lower() if source and source.case_insensitive_paths else parts.path
        query = "&".join(sorted(parts.query.split("&"))) if parts.query else ""
        return urlunsplit(parts._replace(path=path, query=query))
    except ValueError:
        return text


def is_site_root(url: str) -> bool:
    """Whether ``url`` is a site's home page (no path beyond ``/``, no query)."""
    parts = urlsplit(url)
    return parts.path in ("", "/") and not parts.query


def declared_home(url: str, page_canonical: str | None) -> str | None:
    """The site's root, when ``url``, a page below it, declares the root as its rel=canonical;
    else None. Templates that put the home page's canonical on every page say that, and so
    does a home page served in place of a removed article: it names no article either way."""
    text = url.strip() if isinstance(url, str) else ""
    if not page_canonical or not _is_web_url(text):
        return None
    try:
        page, _ = _canonical(text, None)
        declared, _ = _canonical(urljoin(text, page_canonical.strip()), None)
    except ValueError:
        return None
    return declared if _names_only_the_home(page, declared) else None


def _names_only_the_home(page: str, declared: str) -> bool:
    return is_site_root(declared) and not is_site_root(page)


def is_tracking_param(name: str) -> bool:
    """Whether a query parameter name only tracks the visitor (utm_*, fbclid, zarsrc, ...)."""
    name = name.lower()
    return name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES)


# ---------------------------------------------------------------------------- helpers


def _registry(registry: Registry | None) -> Registry | None:
    if registry is not None:
        return registry
    try:
        return default_registry()
    except SourceConfigError as err:
        log.warning("URLs canonicalised without the source registry: %s", err)
        return None


def _is_web_url(text: str) -> bool:
    return _is_web(urlsplit(text))


def _is_web(parts: SplitResult) -> bool:
    return parts.scheme.lower() in _WEB_SCHEMES and bool(parts.hostname)


def _canonical(text: str, registry: Registry | None) -> tuple[str, Source | None]:
    parts, source = _canonical_parts(text, registry)
    return (urlunsplit(parts), source) if parts is not None else (text, None)


def _canonical_parts(text: str, registry: Registry | None
                     ) -> tuple[SplitResult | None, Source | None]:
    """The parts of ``text``'s canonical URL and its source; (None, None) for a string that is
    not an absolute http(s) URL."""
    if not _is_web_url(text):
        return None, None
    parts = urlsplit(safe_url_string(text))
    if not _is_web(parts):
        return None, None
    scheme, netloc, source = _origin(parts.scheme, parts.netloc, registry)
    path = _upper_escapes(parts.path) or "/"
    query = _upper_escapes(_drop_tracking(parts.query))
    return SplitResult(scheme, netloc, path, query, ""), source


@lru_cache(maxsize=4096)
def _origin(scheme: str, netloc: str, registry: Registry | None
            ) -> tuple[str, str, Source | None]:
    """Canonical scheme and netloc of an origin, and its source (cached: a listing's thousands
    of links share a few origins, and courlan's normalisation is the costly part)."""
    origin = urlsplit(normalize_url(SplitResult(scheme, netloc, "", "", "")))
    source = registry.source_for_host(origin.hostname or "") if registry else None
    return (*_source_origin(origin, source), source)


def _source_origin(origin: SplitResult, source: Source | None) -> tuple[str, str]:
    """Scheme and netloc after mapping alias and www/bare hosts to the source's own host."""
    if source is None:
        return origin.scheme, origin.netloc
    host = bare_host(origin.hostname or "")
    canonical_host = next((d for d in source.domains if bare_host(d) == host), source.domains[0])
    default_port = {"http": 80, "https": 443}[source.scheme]
    port = f":{origin.port}" if origin.port and origin.port != default_port else ""
    userinfo = origin.netloc.rpartition("@")[0]
    return source.scheme, (f"{userinfo}@" if userinfo else "") + canonical_host + port


def _same_site(url: str, source: Source | None, other: str, other_source: Source | None) -> bool:
    if source is not None:
        return other_source is source
    return bare_host(urlsplit(url).hostname or "") == bare_host(urlsplit(other).hostname or "")


def _drop_tracking(query: str) -> str:
    pairs = [p for p in query.split("&") if p]
    return "&".join(p for p in pairs if not is_tracking_param(unquote_plus(p.partition("=")[0])))


def _upper_escapes(text: str) -> str:
    return _ESCAPE_RE.sub(lambda m: m.group(0).upper(), text)
