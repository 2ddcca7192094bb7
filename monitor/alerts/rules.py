"""Alert rules (``config/alerts.yaml``): loading, validation, secrets, masking and matching.

A rule names the stories it wants (filters) and where to send them (Apprise URLs). Secrets
are written as ``${ENV_VAR}`` in URLs and read from the environment at load time; they are
never printed: use :func:`mask_url` / :meth:`AlertRules.redact` on anything shown or logged.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vntext import match_key, match_tokens

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
DEFAULT_ALERTS_PATH = CONFIG_DIR / "alerts.yaml"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_EPOCH = datetime(1970, 1, 1)


class AlertsConfigError(ValueError):
    """The alerts file is missing, unreadable or invalid; ``str()`` says where and why."""


class Rule(BaseModel):
    """One alert rule: which stories (filters), how (immediate or digest) and where (URLs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w.-]+$")
    urls: list[str] = Field(min_length=1)
    mode: Literal["immediate", "digest"] = "immediate"
    every_hours: float | None = Field(default=None, gt=0)
    relevant_only: bool = True
    min_score: float | None = None
    provinces: list[str] = []
    sources: list[str] = []
    keywords: list[str] = []
    operator: bool = False  # receives operator alerts (source failing, layout drift) only

    @model_validator(mode="after")
    def _digest_needs_period(self) -> Rule:
        if self.mode == "digest" and self.every_hours is None:
            raise ValueError("a digest rule needs every_hours")
        if self.mode == "immediate" and self.every_hours is not None:
            raise ValueError("every_hours only applies to mode: digest")
        return self

    @field_validator("urls")
    @classmethod
    def _urls_not_blank(cls, urls: list[str]) -> list[str]:
        if any(not url.strip() for url in urls):
            raise ValueError("an URL is empty")
        return [url.strip() for url in urls]

    def due_at(self, created_at: datetime) -> datetime:
        """When an alert created at ``created_at`` is to be sent: now, or its window's end.

        Digest windows are ``every_hours`` long, counted from the Unix epoch (UTC).
        """
        if self.every_hours is None:
            return created_at
        period = timedelta(hours=self.every_hours)
        return _EPOCH + ((created_at - _EPOCH) // period + 1) * period

    def matches(self, *, relevant: bool | None, score: float | None, province: str | None,
                source: str, title: str, text: str) -> bool:
        """Whether an article with these fields is one this (story) rule alerts on."""
        if self.operator:
            return False
        if self.relevant_only and not relevant:
            return False
        if self.min_score is not None and (score is None or score < self.min_score):
            return False
        if self.provinces and match_key(province or "") not in {
            match_key(p) for p in self.provinces
        }:
            return False
        if self.sources and source not in self.sources:
            return False
        return not self.keywords or _contains_any(f"{title}\n{text}", self.keywords)


class _AlertsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = []

    @model_validator(mode="after")
    def _names_unique(self) -> _AlertsFile:
        names = [rule.name for rule in self.rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique: {', '.join(duplicates)}")
        return self


class AlertRules:
    """The validated rules of one alerts file, with their URLs' secrets resolved."""

    def __init__(self, rules: Iterable[Rule], secrets: Iterable[str] = (),
                 path: Path | None = None) -> None:
        self.rules = {rule.name: rule for rule in rules}
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.path = path

    def __bool__(self) -> bool:
        return bool(self.rules)

    def story_rules(self) -> list[Rule]:
        """Rules that receive story alerts."""
        return [rule for rule in self.rules.values() if not rule.operator]

    def operator_rules(self) -> list[Rule]:
        """Rules that receive operator alerts."""
        return [rule for rule in self.rules.values() if rule.operator]

    def redact(self, text: str) -> str:
        """``text`` with every secret value from the environment replaced by ``****``."""
        for secret in self.secrets:
            text = text.replace(secret, "****")
        return text

    def masked_url(self, url: str) -> str:
        """``url`` safe to show: Apprise's privacy form, and no secret value in it."""
        return self.redact(mask_url(url))


def load_rules(path: Path | str | None = None) -> AlertRules:
    """Load and validate an alerts file (default ``config/alerts.yaml``).

    ``${NAME}`` in URLs is replaced by the environment variable ``NAME``; a missing variable,
    an URL Apprise does not know, or any schema error raises :class:`AlertsConfigError`.
    """
    path = Path(path) if path else DEFAULT_ALERTS_PATH
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise AlertsConfigError(f"{path}: cannot read the alerts file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise AlertsConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        parsed = _AlertsFile.model_validate(document)
    except ValidationError as exc:
        raise AlertsConfigError(f"{path}: {_describe(exc, document)}") from exc
    secrets: list[str] = []
    rules = [_resolve(rule, secrets, path) for rule in parsed.rules]
    return AlertRules(rules, secrets, path)


def mask_url(url: str) -> str:
    """An Apprise URL with its credentials and tokens hidden (Apprise's privacy form, without
    the query of delivery options)."""
    import apprise  # on first use: the crawl writer and most commands never need it (0.2 s)

    plugin = apprise.Apprise.instantiate(url)
    if plugin is not None:
        return plugin.url(privacy=True).split("?", 1)[0]
    return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1****@", url.split("?", 1)[0])


def url_digest(url: str) -> str:
    """A short stable identifier of a resolved URL (stored; never reversible to secrets)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def _resolve(rule: Rule, secrets: list[str], path: Path) -> Rule:
    import apprise  # on first use: the crawl writer and most commands never need it (0.2 s)

    urls = []
    for position, url in enumerate(rule.urls, start=1):
        resolved = _substitute_env(url, secrets, f"{path}: rule {rule.name!r}, url {position}")
        if apprise.Apprise.instantiate(resolved) is None:
            shown = mask_url(resolved)
            for secret in secrets:
                shown = shown.replace(secret, "****")
            raise AlertsConfigError(
                f"{path}: rule {rule.name!r}, url {position} ({shown}) is not a valid Apprise "
                "URL (see https://github.com/caronc/apprise/wiki for the schemes)"
            )
        urls.append(resolved)
    return rule.model_copy(update={"urls": urls})


def _substitute_env(url: str, secrets: list[str], where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise AlertsConfigError(f"{where}: environment variable {match.group(1)} is not set")
        secrets.append(value)
        return value

    return _ENV_REFERENCE.sub(replace, url)


def _contains_any(text: str, keywords: Iterable[str]) -> bool:
    haystack = f" {' '.join(match_tokens(text))} "
    return any(f" {' '.join(match_tokens(word))} " in haystack for word in keywords)


def _describe(exc: ValidationError, document: object) -> str:
    messages = []
    for error in exc.errors():
        location = _location(error["loc"], document)
        messages.append(f"{location}: {error['msg']}" if location else error["msg"])
    return "; ".join(messages)


def _location(loc: tuple[int | str, ...], document: object) -> str:
    """``rules[2] ('all').urls`` style path of a validation error, naming the rule."""
    parts: list[str] = []
    node = document
    for key in loc:
        if isinstance(key, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{key}]"]
            node = node[key] if isinstance(node, list) and key < len(node) else None
            if isinstance(node, dict) and "name" in node and len(parts) == 1:
                parts[-1] += f" ({node['name']!r})"
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts)
