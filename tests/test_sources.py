"""The source registry: the shipped config/sources.yaml and the loader's validation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crawler.sources import REPO_SOURCES_PATH, Registry, SourceConfigError, bare_host, load_registry

REPO_ROOT = Path(__file__).resolve().parents[1]
MIRRORED_SOURCES = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(REPO_SOURCES_PATH)


@pytest.fixture(scope="module")
def manifest(sites_dir: Path) -> list[dict]:
    return json.loads((sites_dir / "manifest.json").read_text("utf-8"))["resources"]


def run_dtmon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line in a fresh process (slow: use for exit codes and tracebacks)."""
    return subprocess.run(
        [sys.executable, "-c", "from monitor.cli import main; main()", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def invoke(*args: str, env: dict[str, str] | None = None):
    """The command line in this process, through typer's runner."""
    from monitor.cli import app

    return CliRunner().invoke(app, list(args), env=env, terminal_width=200)


# ---------------------------------------------------------------------------- the shipped registry


def test_registry_has_the_34_post_merger_units_with_unique_names_and_portals(registry: Registry):
    names = [p.name for p in registry.provinces]
    portals = [bare_host(p.portal) for p in registry.provinces]
    assert len(names) == 34
    assert len(set(names)) == 34 and len(set(portals)) == 34
    assert all(unicodedata.is_normalized("NFC", n) for n in names)
    assert {"Hà Nội", "Huế", "Hải Phòng", "Đà Nẵng", "Hồ Chí Minh", "Cần Thơ"} <= set(names)
    merged = {m.province for p in registry.provinces for m in p.merged}
    assert len(merged) == 29  # 63 provinces before 1 July 2025 = 34 units + 29 merged away


def test_every_province_portal_is_a_source(registry: Registry):
    for province in registry.provinces:
        source = registry.source_for_url(f"https://{province.portal}/")
        assert source is not None, province.name
        assert source.province == province.name


def test_every_non_national_source_has_a_province(registry: Registry):
    for source in registry.sources:
        assert (source.province is None) == (source.kind == "national"), source.name


@pytest.mark.parametrize(("host", "province"), [
    ("hagiang.gov.vn", "Tuyên Quang"),
    ("www.hagiang.gov.vn", "Tuyên Quang"),
    ("thuathienhue.gov.vn", "Huế"),
    ("HUE.GOV.VN", "Huế"),
    ("baria-vungtau.gov.vn", "Hồ Chí Minh"),
    ("quangninh.gov.vn", "Quảng Ninh"),
    ("baohungyen.vn", "Hưng Yên"),
    ("vov.vn", None),
    ("example.com", None),
])
def test_province_for_host(registry: Registry, host: str, province: str | None):
    assert registry.province_for_host(host) == province


def test_every_mirrored_host_maps_to_its_source(registry: Registry, manifest: list[dict]):
    names = {registry.source_for_url(r["url"]).name for r in manifest}
    assert names == set(MIRRORED_SOURCES)


def test_mirrored_sources_discovery_urls_exist_on_the_site(registry: Registry, manifest):
    served = {r["url"] for r in manifest if r["method"] == "GET" and r["status"] == 200}
    for source in registry.select(MIRRORED_SOURCES):
        for url in [*source.feeds, *source.sitemaps, *(lst.url for lst in source.listings)]:
            assert url in served, (source.name, url)


@pytest.mark.parametrize("name", ["vov", "hungyen", "quangninh", "hue"])
def test_get_next_page_template_gives_the_sites_second_page(registry, manifest, name):
    listing = registry.get(name).listings[0]
    url, form = listing.next_page.render(listing.next_page.first, {})
    assert form == {}
    assert url in {r["url"] for r in manifest}


def test_hagiang_second_page_is_a_post_with_values_read_from_page_one(
    registry: Registry, manifest: list[dict], sites_dir: Path
):
    listing = registry.get("hagiang").listings[0]
    page_one = next(r for r in manifest if r["url"] == listing.url and "t2" in r["snapshots"])
    values = listing.next_page.values_from((sites_dir / page_one["file"]).read_text("utf-8"))
    url, form = listing.next_page.render(listing.next_page.first, values)
    posts = [r for r in manifest if r["method"] == "POST" and r["url"] == url]
    assert listing.next_page.method == "POST"
    assert any(r["form"].items() <= form.items() and r["form"]["page"] == "2" for r in posts)


def test_article_urls_match_gold_articles_and_not_listings(registry: Registry, gold, manifest):
    for article in gold.values():
        for url in [article["url"], *article["alternate_urls"]]:
            assert registry.source_for_url(url).is_article_url(url), url
    for source in registry.select(MIRRORED_SOURCES):
        for url in [*source.feeds, *source.sitemaps, *(lst.url for lst in source.listings)]:
            assert not source.is_article_url(url), url


def test_gold_provinces_agree_with_the_registry(registry: Registry, gold):
    for article in gold.values():
        assert registry.source_for_url(article["url"]).province == article["province"]


def test_get_and_select(registry: Registry):
    assert [s.name for s in registry.select(["hue", "vov"])] == ["hue", "vov"]
    assert len(registry.select([])) == len(registry.sources)
    with pytest.raises(KeyError, match="unknown source 'nope'.*hagiang"):
        registry.get("nope")


# ---------------------------------------------------------------------------- validation

MAIN_HEADER = """\
provinces:
  - name: Hưng Yên
    portal: hungyen.gov.vn
    merged: [{province: Thái Bình, domain: thaibinh.gov.vn}]
  - {name: Huế, portal: hue.gov.vn}
sources:
"""


def write_registry(tmp_path: Path, sources_yaml: str, header: str = MAIN_HEADER) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(header + textwrap.indent(textwrap.dedent(sources_yaml), "  "), "utf-8")
    return path


def test_minimal_generic_entry_gets_listing_domains_scheme_and_derived_province(tmp_path: Path):
    path = write_registry(tmp_path, """\
        - {name: thaibinh, start_urls: ['http://www.thaibinh.gov.vn/tin-tuc']}
        - {name: local, start_urls: ['http://127.0.0.1:8080/']}
        """)
    registry = load_registry(path)
    source = registry.get("thaibinh")
    assert [lst.url for lst in source.listings] == ["http://www.thaibinh.gov.vn/tin-tuc"]
    assert source.domains == ["www.thaibinh.gov.vn"] and source.scheme == "http"
    assert source.province == "Hưng Yên" and source.every_minutes == 30
    assert registry.get("local").province is None


def test_extra_files_are_merged_after_the_main_one(tmp_path: Path):
    main = write_registry(tmp_path, "- {name: hue, start_urls: ['https://hue.gov.vn/']}\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("sources:\n  - {name: local, start_urls: ['http://127.0.0.1:9/']}\n", "utf-8")
    assert [s.name for s in load_registry(main, extra=[extra]).sources] == ["hue", "local"]


FAMILY = """\
families:
  tandan:
    title: SharePoint Tân Dân
    cms: sharepoint
    case_insensitive_paths: true
    article_urls: '(?i)/portal/pages/\\d{4}-\\d{1,2}-\\d{1,2}/[^/]+\\.aspx'
    links: '.title-news a'
    next_page: {url: '{listing}?PageIndex={page}', first: 2}
    evidence: [R §2.2]
"""
BROKEN_FAMILY = """\
  broken:
    title: no evidence
    cms: x
    evidence: []
"""


def test_a_family_fills_in_what_the_entry_does_not_give(tmp_path: Path):
    path = write_registry(tmp_path, """\
        - name: a
          family: tandan
          listings:
            - url: https://a.vn/portal/Pages/Tin-tuc.aspx
            - url: https://a.vn/portal/Pages/Kinh-te.aspx
              next_page: {url: 'https://a.vn/portal/Pages/Kinh-te.aspx?p={page}'}
        - {name: b, family: tandan, article_urls: '/tin/\\d+', start_urls: ['https://b.vn/']}
        """, FAMILY + MAIN_HEADER)
    registry = load_registry(path)
    a, b = registry.get("a"), registry.get("b")
    first, second = a.listings
    assert (a.cms, a.case_insensitive_paths, a.configured) == ("sharepoint", True, "family")
    assert first.links == ".title-news a"
    assert first.next_page.render(2, {})[0] == "https://a.vn/portal/Pages/Tin-tuc.aspx?PageIndex=2"
    assert second.next_page.render(2, {})[0] == "https://a.vn/portal/Pages/Kinh-te.aspx?p=2"
    assert a.is_article_url("https://a.vn/portal/pages/2025-1-2/Tin-abc.aspx")
    assert not b.is_article_url("https://b.vn/portal/Pages/2025-1-2/Tin-abc.aspx")
    assert b.is_article_url("https://b.vn/tin/12") and b.listings[0].next_page is None


@pytest.mark.parametrize(("families", "sources_yaml", "expected"), [
    (FAMILY, "- {name: a, family: nope, start_urls: ['https://a.vn/']}",
     ["sources[0] 'a'", "field 'family'", "unknown family 'nope'", "known: tandan"]),
    (FAMILY + BROKEN_FAMILY, "- {name: a, start_urls: ['https://a.vn/']}",
     ["families.broken", "field 'evidence'"]),
    (FAMILY.replace("{listing}?PageIndex={page}", "{listing}?PageIndex={pg}"),
     "- {name: a, start_urls: ['https://a.vn/']}", ["families.tandan", "uses ['pg']"]),
])
def test_family_mistakes_name_the_family_or_the_entry(tmp_path: Path, families, sources_yaml,
                                                      expected):
    with pytest.raises(SourceConfigError) as error:
        load_registry(write_registry(tmp_path, sources_yaml + "\n", families + MAIN_HEADER))
    assert all(part in str(error.value) for part in expected), str(error.value)


BAD_ENTRIES = {
    "unknown field": ("- {name: a, start_urls: ['https://a.vn/'], colour: red}",
                      ["sources[0] 'a'", "field 'colour'", "Extra inputs"]),
    "wrong type": ("- {name: a, listings: [{url: 'https://a.vn/', max_pages: many}]}",
                   ["sources[0] 'a'", "field 'listings.0.max_pages'", "valid integer"]),
    "bad slug": ("- {name: Bad Name, start_urls: ['https://a.vn/']}",
                 ["sources[0] 'Bad Name'", "field 'name'"]),
    "duplicate name": ("- {name: a, start_urls: ['https://a.vn/']}\n"
                       "- {name: a, start_urls: ['https://b.vn/']}",
                       ["sources[1] 'a'", "field 'name'", "duplicate of", "sources[0] 'a'"]),
    "unknown province": ("- {name: a, province: Atlantis, start_urls: ['https://a.vn/']}",
                         ["sources[0] 'a'", "field 'province'", "Atlantis"]),
    "no discovery": ("- {name: a, domains: [a.vn]}",
                     ["sources[0] 'a'", "no discovery method"]),
    "invalid regex": ("- {name: a, article_urls: '(post', start_urls: ['https://a.vn/']}",
                      ["sources[0] 'a'", "field 'article_urls'", "invalid regular expression"]),
    "regex without group": ("- name: a\n  listings:\n  - url: https://a.vn/\n    next_page:\n"
                            "      {method: POST, url: 'https://a.vn/p', form: {id: '{id}'},"
                            " from_page: {id: 'id=\\d+'}}",
                            ["sources[0] 'a'", "field 'listings.0.next_page.from_page.id'",
                             "exactly one group"]),
    "unknown placeholder": ("- {name: a, listings: [{url: 'https://a.vn/', "
                            "next_page: {url: 'https://a.vn/?p={pgae}'}}]}",
                            ["sources[0] 'a'", "field 'listings.0.next_page'", "pgae"]),
    "relative url": ("- {name: a, feeds: ['/rss']}",
                     ["sources[0] 'a'", "field 'feeds.0'", "absolute"]),
    "duplicate host": ("- {name: a, start_urls: ['https://a.vn/']}\n"
                       "- {name: b, aliases: [www.a.vn], start_urls: ['https://b.vn/']}",
                       ["sources[1] 'b'", "field 'domains'", "'a.vn'", "sources[0] 'a'"]),
    "not a mapping": ("- just-a-string", ["sources[0]:", "valid dictionary"]),
}


@pytest.mark.parametrize("case", list(BAD_ENTRIES))
def test_malformed_entry_gives_one_clear_error_naming_entry_and_field(tmp_path: Path, case: str):
    entry, expected = BAD_ENTRIES[case]
    path = write_registry(tmp_path, entry + "\n")
    with pytest.raises(SourceConfigError) as raised:
        load_registry(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize(("text", "expected"), [
    ("provinces: []\nsources: [\n", "invalid YAML at line"),
    ("- a\n- b\n", "expected a mapping"),
    ("provinces: []\n", "field 'sources': Field required"),
    ("provinces: []\nsources: []\nextras: 1\n", "field 'extras'"),
    ("provinces: [{name: X, portal: 'not a host!'}]\nsources: []\n",
     "provinces[0] 'X': field 'portal'"),
])
def test_malformed_file_gives_one_clear_error(tmp_path: Path, text: str, expected: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text, "utf-8")
    with pytest.raises(SourceConfigError, match=re.escape(expected)):
        load_registry(path)


def test_extra_file_may_hold_only_sources(tmp_path: Path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("provinces: []\nsources: []\n", "utf-8")
    with pytest.raises(SourceConfigError, match="extra.yaml: field 'provinces'"):
        load_registry(REPO_SOURCES_PATH, extra=[extra])


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(SourceConfigError, match="cannot read"):
        load_registry(tmp_path / "absent.yaml")


# ---------------------------------------------------------------------------- CLI


def test_cli_validate_default_registry():
    result = run_dtmon("sources", "validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK: 37 sources, 34 provinces"


def test_cli_validate_bad_file_exits_1_with_one_line_and_no_traceback(tmp_path: Path):
    entry, expected = BAD_ENTRIES["wrong type"]
    path = write_registry(tmp_path, entry + "\n")
    result = run_dtmon("sources", "validate", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for part in expected:
        assert part in result.stderr


@pytest.mark.parametrize("case", ["unknown field", "unknown province", "duplicate host"])
def test_cli_validate_reports_each_kind_of_error_on_one_line(tmp_path: Path, case: str):
    entry, expected = BAD_ENTRIES[case]
    path = write_registry(tmp_path, entry + "\n")
    result = invoke("sources", "validate", str(path))
    assert result.exit_code == 1
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    for part in expected:
        assert part in result.stderr


def test_cli_validate_merges_a_sources_only_file_onto_the_default(tmp_path: Path):
    extra = tmp_path / "local.yaml"
    extra.write_text("sources:\n  - {name: local, start_urls: ['http://127.0.0.1:9/']}\n", "utf-8")
    result = invoke("sources", "validate", str(extra))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "OK: 38 sources, 34 provinces"


def test_cli_list_json_with_extra_sources_and_env_override(tmp_path: Path):
    main = write_registry(tmp_path, "- {name: hue, start_urls: ['https://hue.gov.vn/']}\n")
    extra = tmp_path / "local.yaml"
    extra.write_text("sources:\n  - {name: local, start_urls: ['http://127.0.0.1:9/']}\n", "utf-8")
    result = invoke("sources", "list", "--json", "--sources", str(extra),
                    env={"DTMON_SOURCES": str(main)})
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["name"], r["province"], r["domains"]) for r in rows] == [
        ("hue", "Huế", ["hue.gov.vn"]), ("local", None, ["127.0.0.1"])]


def test_cli_list_table_shows_every_source():
    result = invoke("sources", "list")
    assert result.exit_code == 0, result.output
    for name in [*MIRRORED_SOURCES, "hochiminhcity", "tuyenquang"]:
        assert f" {name} " in result.stdout
    assert "Tuyên Quang" in result.stdout and "POST" in result.stdout
