"""A synthetic mirror for benchmarks: many hosts and articles built from the real page templates.

:func:`generate` writes a folder in the layout of ``shared/sites`` (``manifest.json`` + bodies,
snapshots ``t1`` and ``t2``) and a sources file for it:

* every real article page of the offline mirror whose title and every body paragraph appear
  verbatim in its HTML becomes a template (the paragraphs become slots; the rest of the page,
  its CMS markup and boilerplate, stays as it is);
* each synthetic host takes one template; its articles fill the slots with new paragraphs and
  titles made of sentences of the real articles (shuffled, so that articles differ);
* each host has a plain listing ``/tin-tuc/trang-N.html`` (50 links a page, newest first);
* at ``t2`` each host has a few new articles on top of its listing; everything else is unchanged.

:class:`IndexedMirrorServer` serves it: the stock MirrorServer finds a resource by scanning the
whole manifest, which at 10,000 articles costs more CPU than the crawl being measured.
"""

from __future__ import annotations

import hashlib
import html
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from monitor.mirror import MirrorServer, Resource, load_manifest, normalize_url

LINKS_PER_PAGE = 50
ARTICLE_SENTENCES = 12  # about the length of a short news article
WORD_SWAP_RATE = 0.35
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ARTICLE_PATH = re.compile(r"/tin-tuc/bai-viet-\d+\.html$")
_LAST_MODIFIED = "Sat, 08 Feb 2025 02:00:00 GMT"
_HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Template:
    """A real article page with its title and body paragraphs replaced by slots."""

    host: str
    html: str
    slots: int


@dataclass(frozen=True)
class SyntheticMirror:
    """A generated mirror folder, its sources file and what it holds."""

    root: Path
    sources_file: Path
    sources: list[str]
    articles_t1: int
    articles_t2: int

    def article_urls(self, snapshot: str) -> list[str]:
        """The URLs of the article pages served at ``snapshot``."""
        _, resources = load_manifest(self.root)
        return [r.url for r in resources
                if snapshot in r.snapshots and _ARTICLE_PATH.search(r.url)]


def templates(sites: Path) -> list[Template]:
    """The usable article templates of the real mirror ``sites`` (one per page that fits)."""
    _, resources = load_manifest(sites)
    by_url = {r.url: r for r in resources if r.status == 200 and r.file is not None}
    found: list[Template] = []
    for gold_file in sorted((sites / "gold").glob("*.json")):
        gold = json.loads(gold_file.read_text("utf-8"))
        resource = by_url.get(normalize_url(gold["url"]))
        if resource is None or "utf-8" not in resource.headers.get("Content-Type", "").lower():
            continue
        template = _template(resource, gold)
        if template is not None:
            found.append(template)
    return found


def _template(resource: Resource, gold: dict) -> Template | None:
    assert resource.file is not None
    page = resource.file.read_text("utf-8")
    title = _verbatim(page, gold["title"])
    if title is None:
        return None
    page = page.replace(title, "{TITLE}")
    for url in {gold["url"], resource.url, html.escape(gold["url"])}:
        page = page.replace(url, "{URL}")
    slots = 0
    for paragraph in gold["body"]:
        found = _verbatim(page, paragraph)
        if found is not None:
            page = page.replace(found, f"{{P{slots}}}", 1)
            slots += 1
    if slots < len(gold["body"]):
        return None  # a paragraph left in place would repeat in every article of the template
    escaped = page.replace("{", "{{").replace("}", "}}")
    fillable = re.sub(r"\{\{(TITLE|URL|P\d+)\}\}", r"{\1}", escaped)
    return Template(host=resource.url.split("/")[2], html=fillable, slots=slots)


def _verbatim(page: str, text: str) -> str | None:
    for form in (text, html.escape(text, quote=False), html.escape(text)):
        if form and form in page:
            return form
    return None


def sentence_pool(sites: Path) -> list[str]:
    """Every sentence of the real gold articles' bodies."""
    sentences: list[str] = []
    for gold_file in sorted((sites / "gold").glob("*.json")):
        for paragraph in json.loads(gold_file.read_text("utf-8"))["body"]:
            sentences += [s.strip() for s in _SENTENCE_END.split(paragraph) if len(s) > 20]
    return sentences


def generate(sites: Path, root: Path, articles: int = 10_000, hosts: int = 40,
             new_per_host: int = 2, seed: int = 1) -> SyntheticMirror:
    """Write a synthetic mirror of ``articles`` (at t1) over ``hosts`` into ``root``.

    At t2 each host has ``new_per_host`` more articles.
    """
    rng = random.Random(seed)
    pages, pool = templates(sites), sentence_pool(sites)
    if not pages:
        raise ValueError(f"no usable article template in {sites}")
    resources: list[dict] = []
    sources: list[dict] = []
    per_host = articles // hosts
    for index in range(hosts):
        host = f"tinh{index:02d}.bench.gov.vn"
        template = pages[index % len(pages)]
        writer = _HostWriter(root, host, resources)
        old = [writer.article(i, template, pool, rng, ("t1", "t2")) for i in range(per_host)]
        new = [writer.article(per_host + i, template, pool, rng, ("t2",))
               for i in range(new_per_host)]
        writer.listing(list(reversed(old)), "t1")
        writer.listing(list(reversed(old + new)), "t2")
        sources.append(_source(host, index, pages_needed=per_host // LINKS_PER_PAGE + 2))
    (root / "manifest.json").write_text(
        json.dumps({"snapshots": ["t1", "t2"], "resources": resources}), "utf-8")
    sources_file = root / "sources.yaml"
    sources_file.write_text(yaml.safe_dump({"sources": sources}, allow_unicode=True), "utf-8")
    return SyntheticMirror(root, sources_file, [s["name"] for s in sources],
                           articles_t1=per_host * hosts,
                           articles_t2=(per_host + new_per_host) * hosts)


def _source(host: str, index: int, pages_needed: int) -> dict:
    return {
        "name": f"bench{index:02d}",
        "kind": "national",
        "domains": [host],
        "article_urls": _ARTICLE_PATH.pattern,
        "listings": [{
            "url": f"https://{host}/tin-tuc/trang-1.html",
            "links": "ul.tin-moi a",
            "max_pages": pages_needed,
            "next_page": {"url": f"https://{host}/tin-tuc/trang-{{page}}.html", "first": 2},
        }],
    }


def _vary(sentence: str, rng: random.Random) -> str:
    """``sentence`` with about a third of its words swapped with other words of it: the same
    vocabulary, a new word sequence, so that articles drawing one sentence do not share it."""
    words = sentence.split()
    for i in range(len(words)):
        if rng.random() < WORD_SWAP_RATE:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    return " ".join(words)


class _HostWriter:
    """Writes one host's bodies and manifest entries."""

    def __init__(self, root: Path, host: str, resources: list[dict]) -> None:
        self.root, self.host, self.resources = root, host, resources
        (root / host).mkdir(parents=True, exist_ok=True)

    def article(self, number: int, template: Template, pool: list[str], rng: random.Random,
                snapshots: tuple[str, ...]) -> tuple[str, str]:
        """Write article ``number``; its (URL, title)."""
        title = f"{_vary(rng.choice(pool), rng).rstrip('.')} ({number})"
        per_slot = max(1, min(4, ARTICLE_SENTENCES // template.slots))
        paragraphs = {f"P{i}": html.escape(" ".join(_vary(s, rng)
                                                     for s in rng.sample(pool, per_slot)))
                      for i in range(template.slots)}
        url = f"https://{self.host}/tin-tuc/bai-viet-{number}.html"
        body = template.html.format(TITLE=html.escape(title), URL=url, **paragraphs)
        self._resource(url, f"a{number}.html", body, snapshots)
        return url, title

    def listing(self, articles: list[tuple[str, str]], snapshot: str) -> None:
        """Write the listing pages of ``articles`` (newest first) for ``snapshot``."""
        chunks = [articles[i:i + LINKS_PER_PAGE] for i in range(0, len(articles), LINKS_PER_PAGE)]
        for page, chunk in enumerate(chunks, start=1):
            items = "".join(f'<li><a href="{url}">{html.escape(title)}</a></li>'
                            for url, title in chunk)
            body = (f"<!DOCTYPE html><html lang=\"vi\"><head><meta charset=\"utf-8\">"
                    f"<title>Tin tức - trang {page}</title></head><body><h1>Tin tức</h1>"
                    f"<ul class=\"tin-moi\">{items}</ul></body></html>")
            url = f"https://{self.host}/tin-tuc/trang-{page}.html"
            self._resource(url, f"list-{snapshot}-{page}.html", body, (snapshot,))

    def _resource(self, url: str, name: str, body: str, snapshots: tuple[str, ...]) -> None:
        data = body.encode("utf-8")
        (self.root / self.host / name).write_bytes(data)
        self.resources.append({
            "url": url, "method": "GET", "snapshots": list(snapshots), "status": 200,
            "headers": {"Content-Type": _HTML, "ETag": f'"{hashlib.sha1(data).hexdigest()[:16]}"',
                        "Last-Modified": _LAST_MODIFIED},
            "file": f"{self.host}/{name}",
        })


class IndexedMirrorServer(MirrorServer):
    """A MirrorServer that finds resources through a URL index instead of a full scan."""

    def start(self) -> IndexedMirrorServer:
        super().start()
        self._index: dict[str, list[Resource]] = {}
        for resource in self._resources:
            self._index.setdefault(resource.url, []).append(resource)
        return self

    def find(self, method: str, url: str, form: dict[str, list[str]] | None = None
             ) -> Resource | None:
        candidates = self._index.get(normalize_url(url), [])
        method = "GET" if method == "HEAD" else method
        return next((r for r in candidates if r.method == method
                     and self.snapshot in r.snapshots
                     and (method != "POST" or r.accepts_form(form or {}))), None)
