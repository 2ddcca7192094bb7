"""The source registry (config/sources.yaml): provinces, sources and how each is crawled.

The YAML schema is documented at the top of config/sources.yaml. ``load_registry`` validates a
registry file (plus optional ``extra`` files holding only ``sources:``) and raises
``SourceConfigError`` with one line naming the file, the entry and the field of the first problem.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from cssselect import GenericTranslator, SelectorError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

REPO_SOURCES_PATH = Path(__file__).resolve().parents[1] / "config" / "sources.yaml"
DEFAULT_EVERY_MINUTES = 30
PAGE_FIELD = "page"
_HOST_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?(?:\.[a-z0-9-]{1,63})*$")


class SourceConfigError(ValueError):
    """A registry file that cannot be used; the message names file, entry and field."""


def default_sources_path() -> Path:
    """The registry file: ``$DTMON_SOURCES`` if set, else the repo's config/sources.yaml."""
    return Path(os.environ.get("DTMON_SOURCES") or REPO_SOURCES_PATH)


DEFAULT_SOURCES_PATH = default_sources_path()


def bare_host(host: str) -> str:
    """``host`` lower-cased, without a trailing dot or a leading ``www.``."""
    host = host.strip().lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


# ---------------------------------------------------------------------------- field types


def _compile_regex(value: Any) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a regular expression string")
    try:
        return re.compile(value)
    except re.error as err:
        raise ValueError(f"invalid regular expression {value!r}: {err}") from None


def _one_group(pattern: re.Pattern[str]) -> re.Pattern[str]:
    if pattern.groups != 1:
        raise ValueError(f"regular expression {pattern.pattern!r} must have exactly one group")
    return pattern


def _check_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an absolute http(s) URL, got {value!r}")
    return value.strip()


def _check_host(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    if not _HOST_RE.match(host):
        raise ValueError(f"expected a host name like example.gov.vn, got {value!r}")
    return host


def _check_css(value: str) -> str:
    try:
        GenericTranslator().css_to_xpath(value)
    except SelectorError as err:
        raise ValueError(f"invalid CSS selector {value!r}: {err}") from None
    return value


Regex = Annotated[re.Pattern[str], BeforeValidator(_compile_regex)]
GroupRegex = Annotated[re.Pattern[str], BeforeValidator(_compile_regex), AfterValidator(_one_group)]
Url = Annotated[str, AfterValidator(_check_url)]
Host = Annotated[str, AfterValidator(_check_host)]
CssSelector = Annotated[str, AfterValidator(_check_css)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------- models


class MergedProvince(_Model):
    """An old province merged into a provincial unit on 1 July 2025."""

    province: str
    domain: Host


class Province(_Model):
    """One of the 34 provincial-level units."""

    name: str = Field(min_length=1)
    portal: Host
    merged: list[MergedProvince] = []

    @property
    def hosts(self) -> list[str]:
        """The portal domain and the merged provinces' domains."""
        return [self.portal, *(m.domain for m in self.merged)]


class Schedule(_Model):
    """How often the daemon crawls a source."""

    every_minutes: int = Field(DEFAULT_EVERY_MINUTES, ge=1)


def _placeholders(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise ValueError(f"invalid template {template!r}: {err}") from None


class NextPage(_Model):
    """How to reach pages 2.. of a listing: a URL (and POST form) template over ``{page}``."""

    method: Literal["GET", "POST"] = "GET"
    url: str
    first: int = Field(2, ge=0, description="page number of the first page reached this way")
    form: dict[str, str] = {}
    from_page: dict[str, GroupRegex] = {}

    @model_validator(mode="after")
    def _check_templates(self) -> NextPage:
        if self.form and self.method != "POST":
            raise ValueError("'form' is only allowed with method POST")
        known = {PAGE_FIELD, *self.from_page}
        for template in (self.url, *self.form.values()):
            unknown = _placeholders(template) - known
            if unknown:
                raise ValueError(
                    f"template {template!r} uses {sorted(unknown)}; known: {sorted(known)} "
                    "(add a from_page regex)"
                )
        _check_url(self.url.replace("{", "").replace("}", ""))
        return self

    def values_from(self, html: str) -> dict[str, str]:
        """The ``from_page`` values read from page 1's HTML (missing ones are left out)."""
        found = {name: pattern.search(html) for name, pattern in self.from_page.items()}
        return {name: match.group(1) for name, match in found.items() if match}

    def render(self, page: int, values: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """URL and form of page ``page`` given the ``from_page`` values (KeyError if one lacks)."""
        fields = {**values, PAGE_FIELD: str(page)}
        return self.url.format(**fields), {k: v.format(**fields) for k, v in self.form.items()}


class Listing(_Model):
    """A listing page (page 1) and how to find its articles and its following pages."""

    url: Url
    links: CssSelector | None = None
    max_pages: int = Field(5, ge=1)
    next_page: NextPage | None = None


Configured = Literal["evidence", "family", "generic"]
_FAMILY_DEFAULTS = ("cms", "case_insensitive_paths", "article_urls")
_LISTING_PLACEHOLDERS = ("{listing}", "{origin}")


class Family(_Model):
    """A CMS family: what every portal on it shares (``families:`` in the registry).

    ``next_page`` templates may use ``{listing}`` (the listing's page 1 URL) and ``{origin}``
    (its scheme and host); they are filled in for each listing of a source of the family.
    ``date_format`` and ``boilerplate`` record the family's visible date string and its
    non-article blocks, as evidenced, for the operator and for extraction work.
    """

    title: str
    cms: str
    case_insensitive_paths: bool = False
    article_urls: Regex | None = None
    links: CssSelector | None = None
    next_page: dict[str, Any] | None = None
    date_format: str | None = None
    boilerplate: list[CssSelector] = []
    evidence: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_next_page(self) -> Family:
        if self.next_page is not None:  # checked as it would be for a listing of the family
            NextPage.model_validate(_fill_listing(self.next_page, "https://portal.example.vn/"))
        return self

    def source_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """``entry`` (a source's YAML mapping) with this family's values where it has none."""
        merged = dict(entry)
        for key in _FAMILY_DEFAULTS:
            value = getattr(self, key)
            if key not in merged and value not in (None, False):
                merged[key] = value.pattern if isinstance(value, re.Pattern) else value
        merged["listings"] = [self._listing(lst) for lst in entry.get("listings") or []]
        return merged

    def _listing(self, listing: Any) -> Any:
        if not isinstance(listing, dict) or not isinstance(listing.get("url"), str):
            return listing  # the Source model reports it
        filled = dict(listing)
        if self.links and "links" not in filled:
            filled["links"] = self.links
        if self.next_page and "next_page" not in filled:
            filled["next_page"] = _fill_listing(self.next_page, filled["url"])
        return filled


def _fill_listing(template: Any, url: str) -> Any:
    """``template`` (nested dicts of strings) with ``{listing}`` and ``{origin}`` replaced."""
    if isinstance(template, dict):
        return {key: _fill_listing(value, url) for key, value in template.items()}
    if not isinstance(template, str):
        return template
    parts = urlsplit(url)
    values = dict(zip(_LISTING_PLACEHOLDERS, (url, f"{parts.scheme}://{parts.netloc}"),
                      strict=True))
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    return template


class Source(_Model):
    """A crawled site: a provincial portal, a newspaper or national media."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    title: str | None = None
    kind: Literal["portal", "newspaper", "national"] = "portal"
    province: str | None = None
    family: str | None = None
    evidence: list[str] = []
    generic_reason: str | None = None
    domains: list[Host] = []
    aliases: list[Host] = []
    scheme: Literal["http", "https"] | None = None
    cms: str = "generic"
    case_insensitive_paths: bool = False
    schedule: Schedule = Schedule()
    article_urls: Regex | None = None
    feeds: list[Url] = []
    sitemaps: list[Url] = []
    listings: list[Listing] = []
    start_urls: list[Url] = []
    allowed_domains: list[Host] = []

    @model_validator(mode="after")
    def _fold_generic_mode(self) -> Source:
        if not (self.feeds or self.sitemaps or self.listings or self.start_urls):
            raise ValueError("no discovery method: give feeds, sitemaps, listings or start_urls")
        self.listings = [*self.listings, *(Listing(url=u) for u in self.start_urls
                                           if u not in {lst.url for lst in self.listings})]
        declared = [*self.domains, *self.allowed_domains]
        discovered = [urlsplit(u).hostname or "" for u in self._discovery_urls()]
        self.domains = list(dict.fromkeys(declared or discovered))
        if self.scheme is None:
            first_scheme = urlsplit(self._discovery_urls()[0]).scheme
            self.scheme = "http" if first_scheme == "http" else "https"
        if self.kind == "national" and self.province is not None:
            raise ValueError("national media have no province (field 'province')")
        return self

    @property
    def configured(self) -> Configured:
        """``evidence`` (values backed by the site's own evidence), ``family`` (only its CMS
        family's), or ``generic`` (generic discovery, ``generic_reason`` says why)."""
        if self.evidence:
            return "evidence"
        return "family" if self.family else "generic"

    def _discovery_urls(self) -> list[str]:
        return [*self.feeds, *self.sitemaps, *(lst.url for lst in self.listings)]

    @property
    def all_hosts(self) -> list[str]:
        """Hosts serving this source: ``domains`` then ``aliases``."""
        return [*self.domains, *self.aliases]

    @property
    def every_minutes(self) -> int:
        """Crawl period in minutes."""
        return self.schedule.every_minutes

    def is_article_url(self, url: str) -> bool | None:
        """Whether ``url`` is an article per ``article_urls``; None when the source has none."""
        return None if self.article_urls is None else bool(self.article_urls.search(url))


class _MainFile(_Model):
    families: dict[str, Any] = {}
    provinces: list[Any]
    sources: list[Any]


class _ExtraFile(_Model):
    sources: list[Any]


FileModel = TypeVar("FileModel", _MainFile, _ExtraFile)


# ---------------------------------------------------------------------------- registry


class Registry:
    """The validated provinces and sources, with look-ups by name and by host."""

    def __init__(self, provinces: list[Province], sources: list[Source]) -> None:
        self.provinces = provinces
        self.sources = sources
        self._by_name = {s.name: s for s in sources}
        self._source_by_host = {bare_host(h): s for s in sources for h in s.all_hosts}
        self._province_by_host = {bare_host(h): p.name for p in provinces for h in p.hosts}

    def get(self, name: str) -> Source:
        """The source called ``name`` (KeyError listing the known names otherwise)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"unknown source {name!r}; known sources: {', '.join(sorted(self._by_name))}"
            ) from None

    def select(self, names: Sequence[str]) -> list[Source]:
        """The named sources in the given order, or every source when ``names`` is empty."""
        return [self.get(n) for n in names] if names else list(self.sources)

    def source_for_url(self, url: str) -> Source | None:
        """The source serving ``url``'s host (domains or aliases, with or without www)."""
        try:
            host = urlsplit(url.strip()).hostname
        except ValueError:
            return None
        return self.source_for_host(host) if host else None

    def source_for_host(self, host: str) -> Source | None:
        """The source serving ``host`` (with or without www)."""
        return self._source_by_host.get(bare_host(host))

    def province_for_host(self, host: str) -> str | None:
        """The provincial unit of a host: a portal or merged domain, else its source's province."""
        province = self._province_by_host.get(bare_host(host))
        if province is None:
            source = self.source_for_host(host)
            province = source.province if source else None
        return province


def load_registry(path: str | Path | None = None, extra: Iterable[str | Path] = ()) -> Registry:
    """Load and validate the registry at ``path`` (default: ``default_sources_path()``) and merge
    the sources of the ``extra`` files after it. Raises ``SourceConfigError``."""
    main_path = Path(path) if path is not None else default_sources_path()
    main = _validated(_MainFile, main_path)
    families = _families(main_path, main.families)
    provinces = _provinces(main_path, main.provinces)
    names = {p.name for p in provinces}
    entries = [(main_path, i, e) for i, e in enumerate(main.sources)]
    for extra_path in map(Path, extra):
        extra_sources = _validated(_ExtraFile, extra_path).sources
        entries += [(extra_path, i, e) for i, e in enumerate(extra_sources)]
    registry = Registry(provinces, [])
    sources: list[Source] = []
    for file, index, entry in entries:
        source = _source(file, index, entry, families)
        _fill_province(source, registry, names, _where(file, "sources", index, source.name))
        sources.append(source)
    _check_unique_sources(entries, sources)
    return Registry(provinces, sources)


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The default registry, loaded once per process."""
    return load_registry()


# ---------------------------------------------------------------------------- validation helpers


def _where(file: Path, section: str, index: int, name: Any = None) -> str:
    label = f" {name!r}" if isinstance(name, str) else ""
    return f"{file}: {section}[{index}]{label}"


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return (f"field '{loc}': " if loc else "") + message + more


def _read_yaml(file: Path) -> Any:
    try:
        return yaml.safe_load(file.read_text("utf-8"))
    except OSError as err:
        raise SourceConfigError(f"{file}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise SourceConfigError(f"{file}: not UTF-8 text: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SourceConfigError(f"{file}: invalid YAML{where}: {problem}") from None


def _validated(model: type[FileModel], file: Path) -> FileModel:
    data = _read_yaml(file)
    if not isinstance(data, dict):
        keys = ", ".join(model.model_fields)
        raise SourceConfigError(f"{file}: expected a mapping with keys: {keys}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SourceConfigError(f"{file}: {_first_error(err)}") from None


def _provinces(file: Path, entries: list[Any]) -> list[Province]:
    provinces: list[Province] = []
    seen: dict[tuple[str, str], str] = {}
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = _where(file, "provinces", index, name)
        try:
            province = Province.model_validate(entry)
        except ValidationError as err:
            raise SourceConfigError(f"{where}: {_first_error(err)}") from None
        claims = [("name", province.name), *(("domain", bare_host(h)) for h in province.hosts)]
        for field, value in claims:
            if (field, value) in seen:
                raise SourceConfigError(
                    f"{where}: field '{field}': {value!r} already used by {seen[field, value]}"
                )
            seen[field, value] = where
        provinces.append(province)
    return provinces


def _families(file: Path, entries: dict[str, Any]) -> dict[str, Family]:
    families: dict[str, Family] = {}
    for name, entry in entries.items():
        try:
            families[name] = Family.model_validate(entry)
        except ValidationError as err:
            raise SourceConfigError(f"{file}: families.{name}: {_first_error(err)}") from None
    return families


def _source(file: Path, index: int, entry: Any, families: Mapping[str, Family]) -> Source:
    where = _where(file, "sources", index, entry.get("name") if isinstance(entry, dict) else None)
    family_name = entry.get("family") if isinstance(entry, dict) else None
    if family_name is not None:
        if family_name not in families:
            raise SourceConfigError(
                f"{where}: field 'family': unknown family {family_name!r}; known: "
                f"{', '.join(sorted(families)) or 'none (add a families: section)'}")
        entry = families[family_name].source_entry(entry)
    try:
        return Source.model_validate(entry)
    except ValidationError as err:
        raise SourceConfigError(f"{where}: {_first_error(err)}") from None


def _fill_province(source: Source, registry: Registry, names: set[str], where: str) -> None:
    if source.province is not None:
        if source.province not in names:
            raise SourceConfigError(
                f"{where}: field 'province': unknown province {source.province!r} "
                "(use a name from provinces:)"
            )
    elif source.kind != "national":
        source.province = next(
            (p for p in map(registry.province_for_host, source.all_hosts) if p), None
        )


def _check_unique_sources(entries: list[tuple[Path, int, Any]], sources: list[Source]) -> None:
    names: dict[str, str] = {}
    hosts: dict[str, str] = {}
    for (file, index, _), source in zip(entries, sources, strict=True):
        where = _where(file, "sources", index, source.name)
        if source.name in names:
            raise SourceConfigError(f"{where}: field 'name': duplicate of {names[source.name]}")
        names[source.name] = where
        for host in map(bare_host, source.all_hosts):
            if hosts.setdefault(host, where) != where:
                raise SourceConfigError(
                    f"{where}: field 'domains': host {host!r} already served by {hosts[host]}"
                )
