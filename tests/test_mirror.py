"""The offline mirror server answers like the real sites, as the README's replay contract says."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from monitor.mirror import MirrorError, MirrorServer

REPO_ROOT = Path(__file__).resolve().parents[1]


def fetch(server_url: str, real_url: str, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """Ask the server for ``real_url`` the --via way; the response is read (``.data``)."""
    real, server = urlsplit(real_url), urlsplit(server_url)
    connection = http.client.HTTPConnection(server.hostname, server.port, timeout=10)
    path = real.path + (f"?{real.query}" if real.query else "")
    all_headers = {"X-Original-Scheme": real.scheme, "X-Original-Host": real.netloc,
                   **(headers or {})}
    connection.request(method, path, body=body, headers=all_headers)
    response = connection.getresponse()
    response.data = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def listed(sites_dir: Path, **wanted: Any) -> list[dict[str, Any]]:
    """Manifest resources whose fields equal ``wanted`` (``snapshot=`` tests membership)."""
    snapshot = wanted.pop("snapshot", None)
    resources = json.loads((sites_dir / "manifest.json").read_text("utf-8"))["resources"]
    return [r for r in resources
            if all(r.get(k) == v for k, v in wanted.items())
            and (snapshot is None or snapshot in r["snapshots"])]


def test_every_listed_page_is_served_byte_for_byte_with_its_headers(mirror, sites_dir):
    pages = listed(sites_dir, method="GET", status=200, snapshot="t1")
    assert pages
    for page in pages:
        response = fetch(mirror.url, page["url"])
        assert response.status == 200, page["url"]
        assert response.data == (sites_dir / page["file"]).read_bytes(), page["url"]
        for name, value in page["headers"].items():
            assert response.getheader(name) == value, (page["url"], name)


def test_unlisted_urls_are_404(mirror):
    assert fetch(mirror.url, "https://vov.vn/no-such-page").status == 404
    assert fetch(mirror.url, "https://example.org/robots.txt").status == 404
    assert fetch(mirror.url, "http://vov.vn/robots.txt").status == 404  # scheme is part of the key


def test_old_domain_answers_301_to_the_real_new_url(mirror, sites_dir):
    redirects = listed(sites_dir, status=301)
    assert redirects
    for redirect in redirects:
        response = fetch(mirror.url, redirect["url"])
        assert response.status == 301
        assert response.getheader("Location") == redirect["headers"]["Location"]
        assert response.getheader("Location").startswith("https://hue.gov.vn/")


def test_without_original_headers_the_host_header_and_http_are_used(mirror):
    server = urlsplit(mirror.url)
    connection = http.client.HTTPConnection(server.hostname, server.port, timeout=10)
    connection.request("GET", "/robots.txt", headers={"Host": "thuathienhue.gov.vn"})
    response = connection.getresponse()
    connection.close()
    assert response.status == 301
    assert mirror.requests[-1].url == "http://thuathienhue.gov.vn/robots.txt"


@pytest.mark.parametrize("validator", ["If-None-Match", "If-Modified-Since"])
def test_matching_validator_answers_304_and_stale_one_200(mirror, sites_dir, validator):
    page = listed(sites_dir, url="https://vov.vn/robots.txt")[0]
    current = page["headers"]["ETag" if validator == "If-None-Match" else "Last-Modified"]
    stale = '"0000"' if validator == "If-None-Match" else "Sat, 01 Feb 2025 02:00:00 GMT"

    not_modified = fetch(mirror.url, page["url"], headers={validator: current})
    changed = fetch(mirror.url, page["url"], headers={validator: stale})

    assert (not_modified.status, not_modified.data) == (304, b"")
    assert not_modified.getheader("ETag") == page["headers"]["ETag"]
    assert changed.status == 200
    assert changed.data == (sites_dir / page["file"]).read_bytes()
    assert [(r.status, r.conditional) for r in mirror.requests] == [(304, True), (200, True)]


def test_post_is_matched_by_url_and_form_fields(mirror, sites_dir):
    post = listed(sites_dir, method="POST", snapshot="t1")[0]
    form = {**post["form"], "extra": "ignored"}
    wrong = {**post["form"], "page": "99"}
    missing = dict(list(post["form"].items())[:-1])
    content = {"Content-Type": "application/x-www-form-urlencoded"}

    match = fetch(mirror.url, post["url"], "POST", urlencode(form).encode(), content)

    assert match.status == 200
    assert match.data == (sites_dir / post["file"]).read_bytes()
    for bad_form in (wrong, missing):
        assert fetch(mirror.url, post["url"], "POST", urlencode(bad_form).encode(),
                     content).status == 404
    assert fetch(mirror.url, post["url"]).status == 404  # a GET is not the listed POST


def test_switching_snapshot_reveals_new_pages(mirror, sites_dir):
    new_page = listed(sites_dir, method="GET", snapshots=["t2"])[0]
    assert fetch(mirror.url, new_page["url"]).status == 404
    mirror.set_snapshot("t2")
    assert fetch(mirror.url, new_page["url"]).status == 200
    assert [r.url for r in mirror.requests] == [new_page["url"]] * 2
    mirror.clear_log()
    assert mirror.requests == []


def test_unusable_folder_or_snapshot_is_refused_at_start(sites_dir, tmp_path):
    with pytest.raises(MirrorError, match="manifest.json"):
        MirrorServer(tmp_path).start()
    with pytest.raises(MirrorError, match="unknown snapshot 't9'"):
        MirrorServer(sites_dir, snapshot="t9").start()


def test_cli_serves_logs_requests_and_stops_on_sigterm(sites_dir):
    dtmon = Path(sys.executable).with_name("dtmon")
    process = subprocess.Popen(
        [str(dtmon), "mirror", "serve", str(sites_dir), "--snapshot", "t2", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )
    try:
        banner = process.stdout.readline()
        server_url = banner.split(" at ")[1].split(";")[0]
        response = fetch(server_url, "https://vov.vn/sitemaps/2025/6/article.xml")  # t2 only
        log_line = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert response.status == 200
    assert log_line.strip() == "GET 200 https://vov.vn/sitemaps/2025/6/article.xml"
    assert process.returncode == 0, err
    assert "mirror stopped" in out
