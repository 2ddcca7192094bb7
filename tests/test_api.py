"""The HTTP API on the crawled offline mirror: every endpoint, its filters and its refusals,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import feedparser
import pytest
from fastapi.testclient import TestClient

from crawler.vietnamese import normalize_text
from monitor.api import create_app
from monitor.ingest import ingest_article
from monitor.topics import load_topics
from storage.db import init_db, make_engine, session_factory, session_scope
from storage.repository import ArticleData


@pytest.fixture(scope="module")
def client(crawled_database: str) -> Iterator[TestClient]:
    """The API over this module's copy of the crawled mirror, once per backend."""
    with TestClient(create_app(crawled_database)) as client:
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
        assert copy["raw_html"].startswith("http://testserver/articles/")
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
    claimed = client.post("/queue/claim", json={"consumer": "http-nlp", "limit": 3}).json()
    ids = [item["id"] for item in claimed["items"]]
    assert len(ids) == 3
    item = claimed["items"][0]
    assert item["representative"]["text"] and item["lease_expires_at"]
    assert client.get(item["representative"]["raw_html"]).status_code == 200
    acked = client.post("/queue/ack", json={"consumer": "http-nlp", "story_ids": ids[:2]})
    assert acked.json() == {"consumer": "http-nlp", "acked": sorted(ids[:2])}
    released = client.post("/queue/release", json={"consumer": "http-nlp", "story_ids": ids[2:]})
    assert released.json()["released"] == ids[2:]
    status = _get(client, "/queue/status", consumer="http-nlp")
    relevant = len(_all_stories(client, relevant="true"))
    assert status == {"consumer": "http-nlp", "done": 2, "leased": 0, "available": relevant - 2}


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("/stories", {"since": "2024-13-01"}, 422, "since"),
        ("/stories", {"since": "2025-01-02", "until": "2025-01-01"}, 422, "after"),
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
        ("/queue/claim", {"limit": 3}, "consumer"),
        ("/queue/claim", {"consumer": "nlp", "limit": 0}, "limit"),
        ("/queue/claim", {"consumer": "nlp", "lease_seconds": -1}, "lease_seconds"),
        ("/queue/claim", {"consumer": "  "}, "consumer name"),
        ("/queue/ack", {"consumer": "nlp", "story_ids": []}, "story_ids"),
        ("/queue/ack", {"consumer": "nlp", "story_ids": ["x"]}, "story_ids"),
        ("/queue/release", {"consumer": "nlp"}, "story_ids"),
    ],
)
def test_bad_queue_requests_get_a_clear_422(
    client: TestClient, path: str, body: dict, says: str
) -> None:
    response = client.post(path, json=body)
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
