"""`dtmon topics` commands: score, evaluate, explain and rescore with the topic model."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from monitor.rescoring import rescore_articles
from monitor.topics import TopicModel, TopicsConfigError, load_topics
from storage.db import StorageError, init_db, make_engine, session_factory, storage_errors

app = typer.Typer(
    help="Select digital-transformation articles: score, evaluate, explain, rescore.",
    no_args_is_help=True,
)

TopicsOption = Annotated[
    Path | None,
    typer.Option(
        "--topics",
        help="Topics file (default: $DTMON_TOPICS, else config/topics.yaml).",
        dir_okay=False,
    ),
]


class InputError(ValueError):
    """A JSON-lines input line that cannot be used; ``str()`` names the line."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _model(path: Path | None) -> TopicModel:
    try:
        return load_topics(path)
    except TopicsConfigError as exc:
        raise _fail(str(exc)) from None


def read_records(lines: Iterable[str], source: str, required: tuple[str, ...]) -> Iterator[dict]:
    """Parse JSON lines, skipping blank ones; raise :class:`InputError` naming a bad line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source} line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{source} line {number}: expected a JSON object")
        missing = [name for name in required if name not in record]
        if missing:
            raise InputError(f"{source} line {number}: missing field {', '.join(missing)}")
        for name in ("title", "text"):
            if not isinstance(record.get(name) or "", str):
                raise InputError(f"{source} line {number}: field {name} must be a string")
        record["_line"] = number
        yield record


def _score_stream(model: TopicModel, stream: TextIO, output: TextIO) -> None:
    for record in read_records(stream, "stdin", ("id", "text")):
        result = model.score(record.get("title") or "", record["text"])
        answer: dict[str, Any] = {
            "id": record["id"],
            "relevant": result.relevant,
            "score": result.score,
            "matched": result.matched,
        }
        output.write(json.dumps(answer, ensure_ascii=False) + "\n")


@app.command()
def score(topics: TopicsOption = None) -> None:
    """Score JSON lines {"id", "title"?, "text"} from stdin.

    Writes one JSON line {"id", "relevant", "score", "matched"} per article.
    """
    model = _model(topics)
    try:
        _score_stream(model, sys.stdin, sys.stdout)
    except InputError as exc:
        raise _fail(str(exc)) from None


@app.command()
def explain(
    title: Annotated[str, typer.Option("--title", help="The article's title.")] = "",
    topics: TopicsOption = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object: verdict, score, and each term's contribution.")] = False,
) -> None:
    """Explain the verdict on the article text read from stdin."""
    result = _model(topics).score(title, sys.stdin.read())
    if not as_json:
        typer.echo(result.explain())
        return
    typer.echo(json.dumps({
        "relevant": result.relevant, "score": result.score, "threshold": result.threshold,
        "matched": result.matched, "title_points": result.title_points,
        "body_points": {term: {"count": n, "points": round(points, 4)}
                        for term, (n, points) in result.body_points.items()},
        "sentences": result.sentences, "focus_sentences": result.focus_sentences,
        "focus_factor": round(result.focus_factor, 4),
    }, ensure_ascii=False))


@app.command("eval")
def evaluate(
    file: Annotated[
        Path, typer.Argument(help='JSON lines with "id", "title"?, "text", "label" (on/off).')
    ],
    errors: Annotated[
        bool, typer.Option("--errors", help="List the misclassified ids and why.")
    ] = False,
    split: Annotated[
        str | None,
        typer.Option("--split", help='Only records whose "split" field is this (dev, holdout).'),
    ] = None,
    topics: TopicsOption = None,
) -> None:
    """Print precision, recall and F1 of the topic model on a labelled file.

    Records with "hard": true are also counted apart, in the "hard ..." lines.
    """
    model = _model(topics)
    try:
        with file.open(encoding="utf-8") as stream:
            records = list(read_records(stream, str(file), ("id", "text", "label")))
    except OSError as exc:
        raise _fail(f"{file}: cannot read: {exc.strerror or exc}") from None
    except InputError as exc:
        raise _fail(str(exc)) from None
    if split is not None:
        records = [record for record in records if record.get("split") == split]
        if not records:
            raise _fail(f'{file}: no record has "split": "{split}"')
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    hard_counts = dict(counts)
    mistakes = []
    for record in records:
        if record["label"] not in ("on", "off"):
            raise _fail(f'{file} line {record["_line"]}: label must be "on" or "off"')
        result = model.score(record.get("title") or "", record["text"])
        expected = record["label"] == "on"
        outcome = ("t" if result.relevant == expected else "f") + ("p" if result.relevant else "n")
        counts[outcome] += 1
        if record.get("hard") is True:
            hard_counts[outcome] += 1
        if result.relevant != expected:
            mistakes.append((record["id"], record["label"], result.explain()))
    for line in _metrics_lines(counts):
        typer.echo(line)
    if any(hard_counts.values()):
        for line in _metrics_lines(hard_counts)[:3]:
            typer.echo(f"hard {line}")
    if errors:
        for identifier, label, why in mistakes:
            typer.echo(f"{identifier} (labelled {label}): {why}")


def _metrics_lines(counts: dict[str, int]) -> list[str]:
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return [
        f"articles: {tp + fp + fn + tn}",
        f"precision: {precision:.3f}",
        f"recall: {recall:.3f}",
        f"f1: {f1:.3f}",
        f"true positives: {tp}  false positives: {fp}  false negatives: {fn}  true negatives: {tn}",
    ]


@app.command()
def rescore(
    database: Annotated[
        str | None,
        typer.Option("--database", help="Database URL (default: $DTMON_DATABASE_URL)."),
    ] = None,
    topics: TopicsOption = None,
) -> None:
    """Recompute score, relevance and matched terms of every stored article (no refetch)."""
    model = _model(topics)
    try:
        engine = make_engine(database)
        init_db(engine)
        with storage_errors(engine.url), session_factory(engine)() as session:
            summary = rescore_articles(session, model)
    except StorageError as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"rescored {summary.articles} articles: {summary.updated} updated, "
        f"{summary.promoted} promoted to relevant, {summary.demoted} demoted; "
        f"{summary.relevant} relevant now"
    )
