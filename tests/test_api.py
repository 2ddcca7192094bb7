"""The HTTP API on the crawled offline mirror: every endpoint, its filters and its refusals,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
from fastapi.testclient import TestClient

from monitor.api import ServiceSettings, create_app
from monitor.auth import Access, token_digest
from monitor.ingest import ingest_article
from monitor.topics import load_topics
from storage.db import init_db, make_engine, session_factory, session_scope
from storage.repository import ArticleData
from tests.fixtures.shared_data import REPO_ROOT
from vntext import normalize_text

TOKENS = {"http-nlp": "nlp-token-0123456789abcdefghijkl",
          "archive": "archive-token-0123456789abcdefgh"}
ACCESS = Access({name: token_digest(token) for name, token in TOKENS.items()})


def bearer(consumer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[consumer]}"}


@pytest.fixture(scope="module")
def client(crawled_database: str) -> Iterator[TestClient]:
    """The API over this module's copy of the crawled mirror, once per backend; two consumers
    have tokens, reads are open (a local server)."""
    with TestClient(create_app(crawled_database, ServiceSettings(access=ACCESS))) as client:
        yield client


def _get(client: TestClient, path: str, **params) -> dict:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _all_stories(client: TestClient, **params) -> list[dict]:
    return _get(client, "/stories", limit=100, **params)["items"]


def _provinces(story: dict) -> set[str | None]:
    return {copy["province"] for copy in story["copies"]}


def test_stories_list_every_story_newest_first_with_its_copies(client: TestClient) -> None:
    page = _get(client, "/stories", limit=100)
    stories = page["items"]
    assert page["total"] == len(stories) > 10
    dates = [story["published"][:10] for story in stories]
    assert dates == sorted(dates, reverse=True)
    assert sum(len(story["copies"]) for story in stories) == 21  # every mirror article once
    syndicated = [story for story in stories if len(story["copies"]) > 1]
    assert syndicated  # the mirror has copies of one story on several sites
    assert "text" not in syndicated[0]["representative"]  # lists stay light


@pytest.mark.parametrize("province", ["Huế", "Hưng Yên", "Tuyên Quang"])
def test_province_and_relevance_filters_keep_exactly_the_matching_stories(
    client: TestClient, province: str
) -> None:
    everything = _all_stories(client)
    expected = [s["id"] for s in everything if province in _provinces(s)
                and any(c["relevant"] and c["province"] == province for c in s["copies"])]
    got = [s["id"] for s in _all_stories(client, province=province, relevant="true")]
    assert got == expected and got


def test_source_and_day_filters(client: TestClient) -> None:
    from_hue = _all_stories(client, source="hue")
    assert from_hue and all("hue" in {c["source"] for c in s["copies"]} for s in from_hue)
    in_2024 = _all_stories(client, since="2024-01-01", until="2024-12-31")
    assert in_2024
    for story in in_2024:
        assert any(c["published"][:4] == "2024" for c in story["copies"])


@pytest.mark.parametrize("query", ["chuyển đổi số", "họp trực tuyến", "bản đồ số", "DTI"])
def test_full_text_search_finds_stories_containing_every_word(
    client: TestClient, query: str
) -> None:
    found = _all_stories(client, q=query)
    assert found
    for story in found:
        texts = [
            normalize_text(_get(client, f"/articles/{copy['article_id']}")["title"] + " "
                           + _get(client, f"/articles/{copy['article_id']}")["text"]).lower()
            for copy in story["copies"]
        ]
        assert any(all(word in text for word in query.lower().split()) for text in texts)


def test_search_respects_diacritics(client: TestClient) -> None:
    with_marks = {s["id"] for s in _all_stories(client, q="số hóa")}
    assert with_marks
    assert not with_marks & {s["id"] for s in _all_stories(client, q="sổ hòa")}


def test_pagination_walks_every_story_once(client: TestClient) -> None:
    seen, url = [], "/stories?limit=4"
    while url:
        page = client.get(url).json()
        seen += [story["id"] for story in page["items"]]
        url = page["next"]
    assert seen == [story["id"] for story in _all_stories(client)]


def test_story_and_article_carry_text_copies_and_raw_html(client: TestClient) -> None:
    syndicated = next(s for s in _all_stories(client) if len(s["copies"]) > 1)
    story = _get(client, f"/stories/{syndicated['id']}")
    assert len(story["representative"]["text"]) > 200
    for copy in story["copies"]:
        assert copy["raw_html"].startswith("/articles/")
        raw = client.get(copy["raw_html"])
        assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/html")
        assert raw.headers["content-security-policy"] == "sandbox"
        assert b"<html" in raw.content.lower()
    article = _get(client, f"/articles/{story['representative']['id']}")
    assert article["title"] == story["title"] and article["urls"]


def test_sources_with_health(client: TestClient) -> None:
    sources = _get(client, "/sources")
    assert {s["name"] for s in sources} >= {"vov", "hue", "hungyen", "dongnai"}
    assert sum(s["articles"] for s in sources) == 21
    for source in sources:
        assert source["health"]["state"] == "ok" and source["health"]["runs"] == 1


def test_atom_feed_parses_with_every_entry_complete_and_vietnamese_intact(
    client: TestClient,
) -> None:
    response = client.get("/feed.atom")
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.bozo_exception
    relevant = _all_stories(client, relevant="true")
    assert len(feed.entries) == len(relevant)
    for entry, story in zip(feed.entries, relevant, strict=True):
        assert entry.id and entry.link and entry.updated_parsed
        assert entry.title == story["title"]  # Vietnamese as stored, no mojibake
        assert entry.link == story["representative"]["url"]
    assert any("chuyển đổi số" in entry.title.lower() for entry in feed.entries)


def test_atom_feed_per_province(client: TestClient) -> None:
    feed = feedparser.parse(client.get("/feed.atom", params={"province": "Huế"}).content)
    assert not feed.bozo and "Huế" in feed.feed.title
    expected = [s["title"] for s in _all_stories(client, province="Huế", relevant="true")]
    assert [entry.title for entry in feed.entries] == expected and expected


def test_openapi_describes_every_endpoint(client: TestClient) -> None:
    paths = _get(client, "/openapi.json")["paths"]
    assert set(paths) >= {
        "/stories", "/stories/{story_id}", "/articles/{article_id}",
        "/articles/{article_id}/raw", "/sources", "/feed.atom", "/queue/claim", "/queue/ack",
        "/queue/release", "/queue/status",
    }


def test_queue_over_http(client: TestClient) -> None:
    claimed = client.post("/queue/claim", json={"consumer": "http-nlp", "limit": 3},
                          headers=bearer("http-nlp")).json()
    ids = [item["id"] for item in claimed["items"]]
    assert len(ids) == 3
    item = claimed["items"][0]
    assert item["representative"]["text"] and item["lease_expires_at"]
    assert client.get(item["representative"]["raw_html"]).status_code == 200
    acked = client.post("/queue/ack", json={"story_ids": ids[:2]}, headers=bearer("http-nlp"))
    assert acked.json() == {"consumer": "http-nlp", "acked": sorted(ids[:2])}
    released = client.post("/queue/release", json={"consumer": "http-nlp", "story_ids": ids[2:]},
                           headers=bearer("http-nlp"))
    assert released.json()["released"] == ids[2:]
    status = _get(client, "/queue/status", consumer="http-nlp")
    relevant = len(_all_stories(client, relevant="true"))
    assert status == {"consumer": "http-nlp", "done": 2, "leased": 0, "available": relevant - 2}


WRITES = [("/queue/claim", {"consumer": "archive", "limit": 100}),
          ("/queue/ack", {"consumer": "archive", "story_ids": [1, 2, 3]}),
          ("/queue/release", {"consumer": "archive", "story_ids": [1, 2, 3]})]


@pytest.mark.parametrize(("path", "body"), WRITES)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic YTpi",
                                           f"Bearer {TOKENS['archive']}x"])
def test_writes_without_a_valid_token_are_refused_with_401(
    client: TestClient, path: str, body: dict, authorization: str | None
) -> None:
    before = _get(client, "/queue/status", consumer="archive")
    headers = {"Authorization": authorization} if authorization else {}
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert _get(client, "/queue/status", consumer="archive") == before


def test_a_consumer_cannot_claim_ack_or_release_for_another(client: TestClient) -> None:
    held = client.post("/queue/claim", json={"limit": 2}, headers=bearer("archive")).json()
    ids = [item["id"] for item in held["items"]]
    assert len(ids) == 2
    before = _get(client, "/queue/status", consumer="archive")
    assert before["leased"] == 2
    for path, body in [("/queue/claim", {"consumer": "archive", "limit": 100}),
                       ("/queue/ack", {"consumer": "archive", "story_ids": ids}),
                       ("/queue/release", {"consumer": "archive", "story_ids": ids})]:
        response = client.post(path, json=body, headers=bearer("http-nlp"))
        assert response.status_code == 403, response.text
        assert "archive" in response.json()["detail"]
    # Without a name, the token acts for its own consumer, which holds none of these stories.
    for path in ("/queue/ack", "/queue/release"):
        answer = client.post(path, json={"story_ids": ids}, headers=bearer("http-nlp")).json()
        assert answer["consumer"] == "http-nlp" and not (answer.get("acked")
                                                         or answer.get("released"))
    assert _get(client, "/queue/status", consumer="archive") == before  # nothing changed
    released = client.post("/queue/release", json={"story_ids": ids}, headers=bearer("archive"))
    assert released.json() == {"consumer": "archive", "released": sorted(ids)}


def _links_in(value: object) -> list[str]:
    """Every link-like string of a JSON answer (raw_html, next)."""
    if isinstance(value, dict):
        return [link for key, item in value.items()
                for link in ([item] if key in ("raw_html", "next") and item else _links_in(item))]
    if isinstance(value, list):
        return [link for item in value for link in _links_in(item)]
    return []


def _answers_with_links(api: TestClient, host: str) -> list[str]:
    """The links of every answer that carries one, asked with ``Host: host``."""
    forged = {"Host": host}
    story = api.get("/stories", params={"limit": 2}, headers=forged).json()
    story_id = story["items"][0]["id"]
    article_id = story["items"][0]["representative"]["id"]
    claimed = api.post("/queue/claim", json={"limit": 1, "lease_seconds": 0.001},
                       headers={**forged, **bearer("http-nlp")}).json()
    links = (_links_in(story) + _links_in(api.get(f"/stories/{story_id}", headers=forged).json())
             + _links_in(api.get(f"/articles/{article_id}", headers=forged).json())
             + _links_in(claimed))
    feed = feedparser.parse(api.get("/feed.atom", headers=forged).content)
    links += [link.href for link in feed.feed.links]
    assert len(links) >= 8 and story["next"] and claimed["items"]
    return links


def test_a_forged_host_header_changes_no_link(client: TestClient, crawled_database: str) -> None:
    honest = _answers_with_links(client, "127.0.0.1:8000")
    assert _answers_with_links(client, "attacker.example") == honest
    assert all(link.startswith("/") for link in honest)  # relative: no host of anyone's choosing
    page = client.get("/", headers={"Host": "attacker.example"})
    assert page.status_code == 200 and "attacker" not in page.text
    public = "https://news.example.vn/dtmon"
    settings = ServiceSettings(access=ACCESS, public_url=public + "/")
    with TestClient(create_app(crawled_database, settings)) as configured:
        links = _answers_with_links(configured, "attacker.example")
    assert links == [public + link for link in honest]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_2_mb_body_is_refused_with_413(client: TestClient, chunked: bool) -> None:
    body = json.dumps({"story_ids": [1] * 700_000}).encode()
    assert len(body) > 2_000_000
    content = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    response = client.post("/queue/ack", content=content, headers={
        **bearer("http-nlp"), "Content-Type": "application/json"})
    assert response.status_code == 413, response.text[:200]
    assert client.get("/stories", params={"limit": 1}).status_code == 200


@pytest.mark.parametrize(
    ("body", "says"),
    [({"limit": 101}, "limit"), ({"lease_seconds": 3601}, "lease_seconds"),
     ({"lease_seconds": 604800, "limit": 100}, "lease_seconds")],
)
def test_claims_over_the_bounds_are_refused_with_422(
    client: TestClient, body: dict, says: str
) -> None:
    response = client.post("/queue/claim", json=body, headers=bearer("http-nlp"))
    assert response.status_code == 422 and says in response.text


def test_a_refused_large_input_is_not_echoed(client: TestClient) -> None:
    huge = "x" * 60_000
    for response in [
        client.post("/queue/claim", json={"consumer": huge}, headers=bearer("http-nlp")),
        client.post("/queue/ack", json={"story_ids": [huge]}, headers=bearer("http-nlp")),
        client.get("/stories", params={"province": huge[:5000]}),
    ]:
        assert response.status_code == 422
        assert len(response.content) < 1000 and "xxxxxxxxxx" not in response.text


def test_openapi_documents_the_bearer_token_on_writes(client: TestClient) -> None:
    schema = _get(client, "/openapi.json")
    scheme = schema["components"]["securitySchemes"]["consumerToken"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert "consumers.yaml" in scheme["description"]
    for path in ("/queue/claim", "/queue/ack", "/queue/release"):
        operation = schema["paths"][path]["post"]
        assert operation["security"] == [{"consumerToken": []}]
        assert {"401", "403", "413", "422"} <= set(operation["responses"])
    assert "security" not in schema["paths"]["/stories"]["get"]  # reads are open here


def test_reads_can_require_a_token(crawled_database: str) -> None:
    settings = ServiceSettings(access=Access(ACCESS.digests, reads_need_token=True))
    with TestClient(create_app(crawled_database, settings)) as api:
        for path in ("/stories", "/sources", "/feed.atom", "/queue/status?consumer=archive"):
            assert api.get(path).status_code == 401
            assert api.get(path, headers=bearer("archive")).status_code == 200
        assert api.get("/openapi.json").json()["paths"]["/stories"]["get"]["security"]


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "serve", *args], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT),
                                    "DTMON_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}"})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.org"])
def test_the_server_refuses_to_listen_beyond_loopback_without_tokens(
    tmp_path: Path, host: str
) -> None:
    empty = tmp_path / "consumers.yaml"
    empty.write_text("consumers: []\n")
    done = _serve(tmp_path, "--host", host, "--port", "8999", "--consumers", str(empty))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"refusing to listen on {host}" in lines[0], done.stderr
    assert "no consumer tokens are configured" in lines[0]


@pytest.mark.parametrize(
    ("content", "says"),
    [("consumers: [{name: a}]", "exactly one of token_sha256 and token_env"),
     ("consumers: [{name: a, token_env: DTMON_NO_SUCH_TOKEN}]", "is not set"),
     ("consumers: [{name: a, token_sha256: abc}]", "token_sha256"),
     ("consumers: [{name: a, token_sha256: " + "a" * 64 + "}, {name: a, token_sha256: "
      + "b" * 64 + "}]", "listed twice"),
     ("require_token_for_read: true", "require_token_for_read")],
)
def test_a_bad_consumers_file_stops_the_server_with_a_reason(
    tmp_path: Path, content: str, says: str
) -> None:
    consumers = tmp_path / "consumers.yaml"
    consumers.write_text(content)
    done = _serve(tmp_path, "--consumers", str(consumers))
    assert done.returncode != 0 and says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("/stories", {"since": "2024-13-01"}, 422, "since"),
        ("/stories", {"since": "2025-01-02", "until": "2025-01-01"}, 422, "after"),
        ("/stories", {"since": "0001-01-01"}, 422, "since"),
        ("/stories", {"until": "9999-12-31"}, 422, "until"),
        ("/stories", {"limit": 0}, 422, "limit"),
        ("/stories", {"limit": 100000}, 422, "limit"),
        ("/stories", {"offset": -1}, 422, "offset"),
        ("/stories", {"relevant": "maybe"}, 422, "relevant"),
        ("/stories", {"q": ""}, 422, "q"),
        ("/stories", {"q": "!!! ???"}, 422, "no word"),
        ("/stories", {"q": 'chuyển" OR NEAR(đổi'}, 200, ""),  # FTS syntax is never interpreted
        ("/stories", {"province": "x" * 500}, 422, "province"),
        ("/stories/abc", {}, 422, "story_id"),
        ("/stories/0", {}, 422, "story_id"),
        ("/stories/99999999999", {}, 422, "story_id"),
        ("/stories/999999", {}, 404, "no story"),
        ("/articles/999999", {}, 404, "no article"),
        ("/articles/999999/raw", {}, 404, "no article"),
        ("/articles/-5", {}, 422, "article_id"),
        ("/queue/status", {}, 422, "consumer"),
        ("/feed.atom", {"province": "x" * 500}, 422, "province"),
        ("/nowhere", {}, 404, "Not Found"),
    ],
)
def test_bad_parameters_get_a_clear_4xx(
    client: TestClient, path: str, params: dict, status: int, says: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert says in response.text


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/queue/claim", {"consumer": ""}, "consumer"),
        ("/queue/claim", {"limit": 0}, "limit"),
        ("/queue/claim", {"lease_seconds": -1}, "lease_seconds"),
        ("/queue/claim", {"limit": "many"}, "limit"),
        ("/queue/ack", {"story_ids": []}, "story_ids"),
        ("/queue/ack", {"consumer": "http-nlp", "story_ids": ["x"]}, "story_ids"),
        ("/queue/release", {"consumer": "http-nlp"}, "story_ids"),
    ],
)
def test_bad_queue_requests_get_a_clear_422(
    client: TestClient, path: str, body: dict, says: str
) -> None:
    response = client.post(path, json=body, headers=bearer("http-nlp"))
    assert response.status_code == 422, response.text
    assert says in response.text


def test_web_page_answers_bad_filters_with_a_message(client: TestClient) -> None:
    assert client.get("/").status_code == 200
    for params, says in [({"since": "19/07/2024"}, "YYYY-MM-DD"), ({"q": "!!!"}, "no word")]:
        response = client.get("/", params=params)
        assert response.status_code == 400 and says in response.text
    assert client.get("/", params={"page": 0}).status_code == 422


def test_full_text_search_on_each_backend(database_url: str) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    bodies = {
        "so": "Sở Nội vụ tỉnh tổ chức hội nghị tổng kết công tác cải cách hành chính năm.",
        "số": "Tỉnh ra mắt nền tảng số phục vụ người dân, đẩy mạnh chuyển đổi số toàn diện.",
    }
    with session_scope(session_factory(engine)) as session:
        for key, body in bodies.items():
            url = f"https://{'so' if key == 'so' else 'dx'}.example.vn/a.html"
            ingest_article(session, ArticleData(
                source_name=key, url=url, url_key=url, title=body[:30], text=body * 3,
            ), load_topics())
    engine.dispose()
    with TestClient(create_app(database_url)) as api:
        found = _all_stories(api, q="Nền tảng SỐ")  # case-insensitive, diacritics kept
        assert [s["representative"]["source"] for s in found] == ["số"]
        assert [s["representative"]["source"] for s in _all_stories(api, q="sở nội vụ")] == ["so"]
        assert _all_stories(api, q="nen tang so") == []
