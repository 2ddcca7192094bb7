"""Duplicate detection and stories: constructed pairs, gold mirror articles, persistent index."""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from monitor.cli import app
from monitor.dedup import assign_story, best_match
from monitor.similarity import compare, is_duplicate, long_sentences, sentence_hash, similarity
from storage.db import init_db, make_engine, session_factory
from storage.models import Article, LshBucket, SentenceFingerprint, Source, Story
from storage.repository import content_hash

DATA = Path(__file__).parent / "data"
# Constructed pairs: ours, and 80 written without sight of the detector (hard negatives: the same
# event reported independently, one press-release template for two provinces, a brief).
PAIRS_FILES = [DATA / "dedup_pairs.jsonl", DATA / "dedup_holdout.jsonl"]
# Real pairs from public pages (tests/data/README.md): the development parts, and the three
# held-out parts, each scored once and spent since (the third at 76aadef: 6 of 17 copies linked,
# 0 of 22 false merges).
REAL_DEV = [DATA / f"dedup_real_{part}.jsonl"
            for part in ("dev", "dev2", "dev3", "holdout", "holdout2", "holdout3")]
# Copies the linker misses (tests/data/README.md): two sites' rewrites of one organiser's release,
# where the sentence that joins the release's lead to a clause of its own holds only 68 % of the
# other's sentence (alignment 0.35); in the third held-out part, heavier paraphrases sharing at
# most one whole sentence in the excerpt windows, a release whose shared block (85 syllables)
# ends both excerpts, and a rewrite that changed a date (read as a template's other figures).
REAL_MISSES = {"f24e49e2c3", "6d1555e570", "054bebee40", "2f6582b1af",
               "82f0e31849", "1f61c1394d", "b408979ae2", "27e32924e9", "87073d6ecc"}
# The fourth held-out part (tests/data/README.md), collected after the rules were final and
# scored once at de59e9f: 11 of 22 copies linked, 0 of 26 false merges. Not development data.
REAL_HOLDOUT4 = DATA / "dedup_real_holdout4.jsonl"
GOLD_DUPLICATES = {
    frozenset({"hy-hoi-nghi-thuong-truc-cds", "bhy-hoi-nghi-thuong-truc-cds"}),
    frozenset({"hg-repost-vov-cds", "vov-thu-tuong-cds-cai-cach-bo-may"}),
}


def _pairs() -> list[dict]:
    return [json.loads(line) for path in PAIRS_FILES
            for line in path.read_text("utf-8").splitlines() if line]


def _real_pairs() -> list[dict]:
    return [json.loads(line) for path in REAL_DEV
            for line in path.read_text("utf-8").splitlines() if line]


def _pair_id(pair: dict) -> str:
    return pair.get("kind") or f"{pair['event']}: {pair['edit']}"


def _gold_text(article: dict) -> str:
    return "\n".join(article["body"])


@pytest.mark.parametrize("pair", _pairs(), ids=_pair_id)
def test_constructed_pair(pair: dict) -> None:
    assert is_duplicate(pair["a_text"], pair["b_text"]) is pair["duplicate"]
    assert is_duplicate(pair["b_text"], pair["a_text"]) is pair["duplicate"]


def test_constructed_pairs_cover_both_kinds() -> None:
    labels = [p["duplicate"] for p in _pairs()]
    assert len(labels) >= 140 and labels.count(False) >= 50 and labels.count(True) >= 80


@pytest.mark.parametrize("pair", [p for p in _real_pairs() if not p["duplicate"]],
                         ids=lambda p: f"{p['kind']}-{p['id']}")
def test_real_pages_of_different_stories_stay_apart(pair: dict) -> None:
    """Same event written independently, one outlet's template, shared stock paragraphs."""
    assert not is_duplicate(pair["a_text"], pair["b_text"]), compare(pair["a_text"], pair["b_text"])


@pytest.mark.parametrize("pair", [
    pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="known miss"))
    if p["id"] in REAL_MISSES else p
    for p in _real_pairs() if p["duplicate"]], ids=lambda p: f"{p['kind']}-{p['id']}")
def test_real_copies_are_linked(pair: dict) -> None:
    """A lead, a footer or a page's chrome added around the same text, a copy inside a longer
    one, and copies reworded lightly sentence by sentence."""
    figures = compare(pair["a_text"], pair["b_text"])
    assert figures.duplicate, figures
    assert figures == compare(pair["b_text"], pair["a_text"])


def test_fourth_held_out_part_keeps_the_figures_it_was_scored_with() -> None:
    """No false merge among its 26 different stories, and at least the 11 copies linked then."""
    pairs = [json.loads(line) for line in REAL_HOLDOUT4.read_text("utf-8").splitlines() if line]
    verdicts = [(p["duplicate"], is_duplicate(p["a_text"], p["b_text"])) for p in pairs]
    assert sum(truth for truth, _ in verdicts) == 22
    assert sum(got and not truth for truth, got in verdicts) == 0
    assert sum(got and truth for truth, got in verdicts) >= 11


def test_alignment_links_a_light_rewording_that_shares_few_shingles() -> None:
    """Two sites' versions of one police notice: reworded in every sentence, so no shingle
    figure decides, but most sentences keep their words and figures, in order."""
    rewrite = next(p for p in _real_pairs() if p["id"] == "9149821112")
    figures = compare(rewrite["a_text"], rewrite["b_text"])
    assert figures.similarity < 0.5 and figures.containment < 0.8 and figures.block < 100
    assert figures.alignment >= 0.35 and figures.duplicate


def test_a_rewrite_that_joins_sentences_or_adds_a_clause_still_aligns() -> None:
    """A feature retold with a clause of its own in a sentence, and a blog copy joining two
    sentences: the other text's sentence is found whole inside the longer sentence."""
    for pair_id in ("74185bb34a", "a83bc8a230"):
        pair = next(p for p in _real_pairs() if p["id"] == pair_id)
        figures = compare(pair["a_text"], pair["b_text"])
        assert figures.similarity < 0.5 and figures.containment < 0.8 and figures.block < 100
        assert figures.alignment >= 0.4 and figures.duplicate


def test_a_copy_with_look_alike_letters_aligns_as_its_original() -> None:
    """A mirror swapping letters for look-alikes ("ᵭṑng" for "đồng") to escape matching."""
    pair = next(p for p in _real_pairs() if p["kind"] == "copy_with_lookalike_letters")
    assert "ᵭṑng" in pair["b_text"]
    assert compare(pair["a_text"], pair["b_text"]).alignment >= 0.9


def test_a_template_filled_in_with_other_figures_does_not_align() -> None:
    """Sentences repeated word for word with other figures are an outlet's template (a yearly
    item), not a copy, however many of them there are."""
    template = ("Năm {0}, cả nước có {1} cơ quan báo chí hoạt động trên tất cả các loại hình.\n"
                "Nhân sự hoạt động trong lĩnh vực báo chí có khoảng {2} người trên toàn quốc.\n"
                "Tổng số người được cấp thẻ nhà báo trong kỳ hạn này là {3} trường hợp.")
    figures = compare(template.format(2022, 779, "41.000", "20.508"),
                      template.format(2023, 805, "41.500", "21.011"))
    assert figures.alignment == 0.0
    same = compare(template.format(2022, 779, "41.000", "20.508"),
                   "Tin tổng hợp.\n" + template.format(2022, 779, "41.000", "20.508"))
    assert same.alignment == 1.0


def test_containment_and_block_decide_where_similarity_is_low() -> None:
    release = next(p for p in _real_pairs() if p["kind"] == "release_with_own_lead")
    figures = compare(release["a_text"], release["b_text"])
    assert figures.similarity < 0.5 and figures.block >= 100 and figures.duplicate
    inside = next(p for p in _real_pairs() if p["id"] == "3ceb84a3b2")
    figures = compare(inside["a_text"], inside["b_text"])
    assert figures.similarity < 0.5 and figures.containment >= 0.8 and figures.duplicate


def test_a_copy_cut_after_its_first_part_is_linked_by_the_block_that_ends_it() -> None:
    """A release's start reprinted under another outlet's lead, cut there: the shared block is
    too short for the block rule, but it ends the copy while the original goes on. Two stories
    ending with the same closing paragraph end with the same words, and stay apart."""
    release = ("Trung tâm Dữ liệu quốc gia cho biết hệ thống đã kết nối dữ liệu dân cư với các bộ, "
               "ngành và địa phương, phục vụ giải quyết thủ tục hành chính cho người dân. "
               "Việc khai thác dữ liệu được thực hiện theo đúng quy định về bảo vệ dữ liệu cá nhân "
               "và chỉ phục vụ các mục đích đã được pháp luật cho phép.")
    rest = ("Trong năm tới, trung tâm sẽ mở rộng kho dữ liệu sang lĩnh vực y tế, giáo dục và "
            "bảo hiểm xã hội, đồng thời đào tạo thêm cán bộ vận hành ở các tỉnh miền núi. "
            "Người dân có thể tra cứu thông tin của mình trên ứng dụng và đề nghị sửa khi thấy "
            "sai sót, hồ sơ được trả lời trong vòng ba ngày làm việc. "
            "Trung tâm cũng đang thử nghiệm trợ lý ảo trả lời câu hỏi thường gặp của doanh "
            "nghiệp về thủ tục khai thác dữ liệu mở. "
            "Dự kiến cuối năm, toàn bộ hồ sơ giấy của các xã sẽ được số hóa và lưu trữ tập trung.")
    own_lead = ("Sáng nay, tại Hà Nội, lãnh đạo tỉnh đã làm việc với đoàn công tác về tình hình "
                "triển khai các nhiệm vụ trọng tâm trong quý cuối năm của địa phương. "
                "Báo cáo tại buổi làm việc, Giám đốc Sở Khoa học và Công nghệ cho biết tỉnh đã "
                "hoàn thành việc làm sạch dữ liệu của hơn một triệu nhân khẩu trên địa bàn. "
                "Nhiều xã vùng cao đã có điểm hỗ trợ người dân nộp hồ sơ trực tuyến ngay tại "
                "nhà văn hóa thôn, do đoàn thanh niên và công an xã trực. "
                "Đoàn công tác ghi nhận các kết quả này và đề nghị tỉnh sớm báo cáo những vướng "
                "mắc về hạ tầng mạng ở các huyện biên giới. "
                "Các đại biểu đã nghe giới thiệu cách vận hành kho dữ liệu.")
    other_lead = ("Chiều qua, Sở Tư pháp tổ chức hội nghị tổng kết công tác cải cách hành chính "
                  "và giao chỉ tiêu cho các phòng chuyên môn trong năm mới.")
    cut = compare(own_lead + "\n" + release, release + "\n" + rest)
    assert cut.block < 100 and cut.alignment < 0.4 and cut.tail >= 40 and cut.duplicate, cut
    closing = compare(own_lead + "\n" + release, other_lead + "\n" + rest + "\n" + release)
    assert closing.tail == 0 and not closing.duplicate, closing


def test_gold_duplicates_are_exactly_the_syndicated_copies(gold: dict[str, dict]) -> None:
    found = {
        frozenset({a, b})
        for a, b in itertools.combinations(sorted(gold), 2)
        if is_duplicate(_gold_text(gold[a]), _gold_text(gold[b]))
    }
    assert found == GOLD_DUPLICATES


def test_similarity_ignores_case_tone_convention_and_spacing() -> None:
    a = "Ủy ban nhân dân tỉnh đẩy mạnh số hóa hồ sơ, hòa mạng dữ liệu."
    b = "UỶ BAN NHÂN DÂN TỈNH  đẩy mạnh số hoá\u00a0hồ sơ,\nhoà mạng dữ liệu."
    assert similarity(a, b) == 1.0
    assert content_hash(a) == content_hash(b)
    assert similarity(a, "Giá vàng trong nước tăng mạnh theo đà thế giới.") == 0.0


# --- stories in the database ----------------------------------------------------------------


def _add_article(session: Session, source: str, slug: str, text: str, published: str) -> Article:
    """Insert an article as the storage pipeline does, then assign its story."""
    src = session.scalar(select(Source).where(Source.name == source))
    if src is None:
        src = Source(name=source, created_at=datetime(2025, 1, 1))
        session.add(src)
        session.flush()
    url = f"https://{source}.example.vn/{slug}.html"
    article = Article(
        source_id=src.id, url=url, url_key=url, title=slug, text=text, raw_html=b"",
        published=published, published_at=datetime.fromisoformat(published),
        content_hash=content_hash(text), fetched_at=datetime(2025, 1, 1),
    )
    session.add(article)
    session.flush()
    assign_story(session, article)
    return article


def test_gold_articles_form_one_story_per_syndicated_group(
    session: Session, gold: dict[str, dict]
) -> None:
    for key, item in gold.items():
        published = item["published"][:19] if "T" in item["published"] else item["published"]
        _add_article(session, item["host"].replace(".", "-"), key, _gold_text(item), published)
    session.commit()
    stories: dict[int, set[str]] = {}
    for article in session.scalars(select(Article)):
        stories.setdefault(article.story_id, set()).add(article.title)
    shared = {frozenset(keys) for keys in stories.values() if len(keys) > 1}
    assert shared == GOLD_DUPLICATES
    assert len(stories) == len(gold) - 2


def test_copies_share_a_story_whose_representative_is_the_earliest(session: Session) -> None:
    pair = next(p for p in _pairs() if p["edit"] == "credit line")
    other = next(p for p in _pairs() if p["edit"].startswith("same event, different"))
    repost = _add_article(session, "portal", "repost", pair["b_text"], "2025-07-16T09:00:00")
    original = _add_article(session, "paper", "original", pair["a_text"], "2025-07-15T10:00:00")
    exact = _add_article(session, "vov", "exact", pair["a_text"], "2025-07-15T12:00:00")
    unrelated = _add_article(session, "paper", "unrelated", other["b_text"], "2025-07-15T11:00:00")
    session.commit()
    assert repost.story_id == original.story_id == exact.story_id != unrelated.story_id
    story = session.get(Story, original.story_id)
    assert story.representative_id == original.id
    copies = session.scalars(select(Article).where(Article.story_id == story.id))
    assert {a.url for a in copies} == {repost.url, original.url, exact.url}


def test_index_survives_a_restart(database_url: str) -> None:
    pair = next(p for p in _pairs() if p["edit"] == "last paragraph dropped")
    engine = make_engine(database_url)
    init_db(engine)
    with session_factory(engine)() as session:
        first = _add_article(session, "paper", "a", pair["a_text"], "2025-07-15T10:00:00")
        session.commit()
        story_id, bucket_rows = first.story_id, session.scalar(select(func.count(LshBucket.band)))
    engine.dispose()

    engine = make_engine(database_url)
    init_db(engine)
    with session_factory(engine)() as session:
        copy = _add_article(session, "portal", "b", pair["b_text"], "2025-07-14T08:00:00")
        session.commit()
        assert copy.story_id == story_id
        assert session.get(Story, story_id).representative_id == copy.id
    engine.dispose()
    assert bucket_rows > 0


def _outlet_story(intro: str, body: str) -> str:
    return f"{intro}\n{body}"


_INTRO = ("Báo Miền Núi điện tử trân trọng giới thiệu chuyên mục Chuyển đổi số cơ sở, nơi phản ánh "
          "những cách làm hay, mô hình hiệu quả của các xã, thôn bản vùng cao trong việc đưa công "
          "nghệ số vào đời sống người dân, từ dịch vụ công trực tuyến, thanh toán không dùng tiền "
          "mặt đến thương mại điện tử và an toàn thông tin. Chuyên mục được thực hiện với sự phối "
          "hợp của Sở Khoa học và Công nghệ tỉnh, phát hành vào thứ Năm hằng tuần trên báo in và "
          "báo điện tử, đồng thời phát lại trên kênh phát thanh của tỉnh vào buổi tối cùng ngày.")
_BODIES = [
    "Xã Lũng Cú lắp đặt hai mươi loa truyền thanh thông minh tại các thôn.",
    "Chợ phiên Mèo Vạc thí điểm thanh toán bằng mã QR cho các tiểu thương.",
    "Thôn Sủng Là mở lớp dạy kỹ năng số cho hội phụ nữ vào buổi tối.",
    "Trường tiểu học Phố Bảng đưa vào sử dụng phòng học trực tuyến mới.",
    "Huyện Yên Minh hướng dẫn người dân kích hoạt tài khoản định danh điện tử.",
]


def test_an_outlets_fixed_paragraph_is_not_evidence_once_it_recurs(session: Session) -> None:
    """A paragraph found in BOILERPLATE_ARTICLES earlier articles of the source is discounted;
    the first articles carrying it may still be merged (nothing tells boilerplate apart yet)."""
    earlier = [_add_article(session, "mien-nui", f"cds-{n}", _outlet_story(_INTRO, body),
                            f"2025-07-0{n + 1}T08:00:00") for n, body in enumerate(_BODIES[:4])]
    later = _add_article(session, "mien-nui", "cds-new", _outlet_story(_INTRO, _BODIES[4]),
                         "2025-07-09T08:00:00")
    session.commit()
    assert later.story_id not in {a.story_id for a in earlier}
    intro_hashes = {sentence_hash(t) for t in long_sentences(_INTRO)}
    assert set(session.scalars(select(SentenceFingerprint.sentence_hash)
                               .where(SentenceFingerprint.article_id == later.id))) >= intro_hashes


def test_boilerplate_sentences_are_removed_before_comparing() -> None:
    a, b = _outlet_story(_INTRO, _BODIES[0]), _outlet_story(_INTRO, _BODIES[1])
    assert best_match(a, [(2, 7, b)]) is not None
    boilerplate = frozenset(sentence_hash(t) for t in long_sentences(_INTRO))
    assert best_match(a, [(2, 7, b)], boilerplate) is None


def test_a_short_copy_of_a_long_article_is_found_through_its_sentences(session: Session) -> None:
    """Keeping the first paragraphs of a long article leaves a Jaccard similarity too low for the
    MinHash buckets; the shared sentences bring the original to verification."""
    long_text = next(p for p in _real_pairs() if p["kind"] == "same_article_two_urls")["a_text"]
    cut = "\n\n".join(long_text.split("\n\n")[:3])
    assert similarity(long_text, cut) < 0.5 and is_duplicate(long_text, cut)
    original = _add_article(session, "ictvietnam", "full", long_text, "2022-01-04T07:25:00")
    copy = _add_article(session, "portal", "cut", cut, "2022-01-05T07:25:00")
    session.commit()
    assert copy.story_id == original.story_id


def test_a_reworded_copy_is_found_through_its_folded_sentence_openings(session: Session) -> None:
    """A light rewording shares too few shingles for the MinHash buckets and no sentence word
    for word; some of its sentences keep their opening words, which bring the original."""
    pair = next(p for p in _real_pairs() if p["id"] == "01ea96ac67")
    assert similarity(pair["a_text"], pair["b_text"]) < 0.3
    original = _add_article(session, "sggp", "decision", pair["b_text"], "2022-04-22T10:00:00")
    copy = _add_article(session, "apbac", "decision", pair["a_text"], "2022-04-23T07:34:00")
    session.commit()
    assert copy.story_id == original.story_id


# --- command line ---------------------------------------------------------------------------


def test_cli_dedup_pairs_writes_one_verdict_per_line(tmp_path: Path) -> None:
    pairs = _pairs()[:4] + [p for p in _pairs() if not p["duplicate"]][:2]
    file = tmp_path / "pairs.jsonl"
    file.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in pairs), "utf-8")
    result = CliRunner().invoke(app, ["dedup", "pairs", str(file)])
    assert result.exit_code == 0, result.output
    verdicts = [json.loads(line) for line in result.output.splitlines()]
    assert [v["duplicate"] for v in verdicts] == [p["duplicate"] for p in pairs]
    assert all(0.0 <= v["similarity"] <= v["containment"] <= 1.0
               and v["block"] >= v["tail"] >= 0 and 0.0 <= v["alignment"] <= 1.0
               for v in verdicts)


def test_cli_dedup_pairs_reads_standard_input_and_answers_with_its_figures() -> None:
    pair = next(p for p in _real_pairs() if p["kind"] == "release_with_own_lead")
    result = CliRunner().invoke(app, ["dedup", "pairs"], input=json.dumps(pair) + "\n")
    assert result.exit_code == 0, result.output
    [verdict] = [json.loads(line) for line in result.output.splitlines()]
    assert verdict == compare(pair["a_text"], pair["b_text"]).as_dict()
    assert verdict["duplicate"] and verdict["block"] >= 100 and verdict["similarity"] < 0.5


def test_cli_stories_list_and_show(
    session: Session, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = next(p for p in _pairs() if p["edit"] == "title line added")
    original = _add_article(session, "paper", "original", pair["a_text"], "2025-07-15T10:00:00")
    _add_article(session, "portal", "repost", pair["b_text"], "2025-07-16T09:00:00")
    session.commit()
    monkeypatch.setenv("DTMON_DATABASE_URL", database_url)
    runner = CliRunner()

    listed = runner.invoke(app, ["stories", "list", "--json", "--limit", "5"])
    assert listed.exit_code == 0, listed.output
    [story] = [json.loads(line) for line in listed.output.splitlines()]  # one per line
    assert story["id"] == original.story_id and story["title"] == "original"
    assert story["copies"] == 2 and story["sources"] == ["paper", "portal"]
    assert story["first_published"].startswith("2025-07-15T10:00")

    shown = runner.invoke(app, ["stories", "show", str(original.story_id), "--json"])
    assert shown.exit_code == 0, shown.output
    copies = json.loads(shown.output)["copies"]
    assert [(c["source"], c["title"]) for c in copies] == [
        ("paper", "original"),
        ("portal", "repost"),
    ]
    assert copies[1]["url"] == "https://portal.example.vn/repost.html"

    assert runner.invoke(app, ["stories", "show", "999"]).exit_code == 1
    assert "original" in runner.invoke(app, ["stories", "list"]).output
