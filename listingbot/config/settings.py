"""The sections of the file (state, chatkitty, sources, ops, delivery, messages, log,
commands) and
``Config``."""

from __future__ import annotations

import difflib
import re
import types
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from listingbot.config._errors import Loc, Problems, num, problem, show
from listingbot.config._types import (
    Int,
    Interval,
    Jitter,
    Model,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    forget_shared,
    http_url,
    secret_ok,
)
from listingbot.config.filters import (
    FILTERS_BY_SOURCE,
    RESERVED_FILTER_KEYS,
    KatoFilters,
    KotohomesFilters,
)
from listingbot.config.subscriptions import Subscription, channel_ref, cross_problems
from listingbot.models import SOURCES, Source


class StateConfig(Model):
    """Where the SQLite state lives, and when what it holds is forgotten."""

    path: Path
    # Unseen this long: a listing is checked for (not forgotten), sent messages are
    # compacted, unconfigured subscriptions and unpolled queries are forgotten.
    retention: Interval = timedelta(days=30)
    # Kotohomes: long-unseen listings asked about (GET /v1/listings/{id}) per poll.
    gone_checks_per_poll: Annotated[Int, Field(ge=0, le=1000)] = 5
    # Kato: complete sweeps in a row without a listing before it is forgotten.
    gone_after_sweeps: Annotated[Int, Field(ge=1, le=1000)] = 3

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str | Path):
            raise problem(f"expected a file path (got {show(value)})", "expected a file path")
        text = str(value).strip()
        if not text:
            raise problem("must not be empty")
        path = Path(text).expanduser()
        base_dir = (info.context or {}).get("base_dir")
        # Relative to the config file, so the service finds its state whatever its cwd is.
        if not path.is_absolute() and isinstance(base_dir, Path):
            path = base_dir / path
        return path


class ChatKittyConfig(Model):
    """The destination: ChatKitty's Platform API and its client-credentials login."""

    api_url: str
    path_prefix: str = "/v1"
    token_url: str
    client_id: SecretStr
    client_secret: SecretStr
    timeout_s: PosFloat = 30.0

    @field_validator("api_url", "token_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        text = value.strip().rstrip("/")
        if text and not text.startswith("/"):
            raise problem(
                f"must be empty or start with '/' (got {value!r}), e.g. /v1",
                "must be empty or start with '/', e.g. /v1",
            )
        if any(ch.isspace() or ch in "?#" for ch in text):
            raise problem("must be a plain path such as /v1 or /v1/applications/<id>")
        return text

    @field_validator("client_id", "client_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        return secret_ok(value)


class KotohomesConfig(Model):
    """The Kotohomes Listing API (US homes)."""

    api_url: str = "https://api.kotohomes.com"
    key: SecretStr
    poll_interval: Interval = timedelta(minutes=5)
    poll_jitter: Jitter = timedelta(seconds=10)
    limit: Annotated[Int, Field(ge=1, le=50)] = 50
    # states=NY (today's form) / states[]=NY (the seed's, deprecated but still accepted)
    array_style: Literal["brackets", "repeat"] = "repeat"
    # sort_by of the new-listings search; an explicit direction only today's API knows
    created_sort: Literal["created_at", "created_at desc", "created_at asc"] = "created_at"
    min_request_interval_s: NonNegFloat = 0.0  # no documented rate limit: pace politely
    timeout_s: PosFloat = 30.0

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("key")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        return secret_ok(value)


# The placeholders of sources.kato.listing_url: Kato records carry no link of their own.
KATO_URL_FIELDS: tuple[str, ...] = ("id", "reference_number", "external_ref")


class KatoConfig(Model):
    """The Kato Client API (UK commercial availability)."""

    # Production (documented default); the sandbox is client-api.integrations.kato-sandbox.app
    api_url: str = "https://client-api.kato.app"
    api_version: Literal["v1", "v2"] = "v2"
    token_path: str = "/oauth/token"  # noqa: S105 - a URL path, not a secret
    client_id: SecretStr
    client_secret: SecretStr
    scope: str = "*"
    poll_interval: Interval = timedelta(minutes=10)
    poll_jitter: Jitter = timedelta(seconds=10)
    requests_per_minute: Annotated[Int, Field(ge=1, le=6000)] = 60
    # The seed's changelog: "Availability: Pagination limit changed to 50" - the maximum.
    page_size: Annotated[Int, Field(ge=1, le=50)] = 50
    timeout_s: PosFloat = 30.0
    # The link posted for a listing (records carry none): a template over {id},
    # {reference_number} and {external_ref}. Without one: the brochure/particulars file.
    listing_url: str | None = None

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("listing_url")
    @classmethod
    def _listing_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        names = re.findall(r"\{([^{}]*)\}", text)
        unknown = [n for n in names if n not in KATO_URL_FIELDS]
        if unknown:
            known = ", ".join("{" + n + "}" for n in KATO_URL_FIELDS)
            raise problem(f"unknown placeholder {{{unknown[0]}}} (use {known})")
        parts = urlsplit(re.sub(r"\{[^{}]*\}", "x", text))
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise problem(
                "must be an http(s) URL template, e.g. "
                "https://agency.example/property/{reference_number}"
            )
        return text

    @field_validator("token_path")
    @classmethod
    def _token_path(cls, value: str) -> str:
        text = value.strip()
        if not text.startswith("/") or any(ch.isspace() or ch in "?#" for ch in text):
            raise problem("must be a path starting with '/', e.g. /oauth/token")
        return text

    @field_validator("client_id", "client_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        return secret_ok(value)


class SourcesConfig(Model):
    """The listing sources; configure at least one."""

    kotohomes: KotohomesConfig | None = None
    kato: KatoConfig | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> SourcesConfig:
        if not self.configured():
            raise problem("configure at least one source: kotohomes or kato")
        return self

    def configured(self) -> tuple[Source, ...]:
        """The names of the configured sources, in ``SOURCES`` order."""
        return tuple(s for s in SOURCES if getattr(self, s) is not None)


class OpsConfig(Model):
    """The health/metrics endpoint and the outbox-age readiness threshold."""

    listen: str | None = "127.0.0.1:9108"  # "host:port", or null to switch the endpoint off
    max_outbox_age: Interval = timedelta(minutes=15)

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> Any:
        if value is None or value is False:
            return None
        if not isinstance(value, str):
            raise problem(
                f'expected "host:port" or null (got {show(value)})', 'expected "host:port" or null'
            )
        text = value.strip()
        if text.lower() in {"", "off", "false", "null", "none"}:
            return None
        host, sep, port = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise problem(
                f'must be "host:port", e.g. 127.0.0.1:9108 (got {value!r})',
                'must be "host:port", e.g. 127.0.0.1:9108',
            )
        return text


class DeliveryConfig(Model):
    """How the outbox is drained into ChatKitty."""

    interval: Interval = timedelta(seconds=30)
    concurrency: Annotated[Int, Field(ge=1, le=64)] = 4
    # Accepted so that existing configs keep loading; unused since messages give up by
    # age (give_up_after), not by counting attempts (a refusal is not a failed attempt).
    max_attempts: Annotated[Int, Field(ge=1)] = 12
    backoff_base_s: PosFloat = 2.0
    backoff_max_s: PosFloat = 600.0
    grace_period_s: NonNegFloat = 10.0
    # Most messages one reconciliation reads back through a channel before it gives up
    # for now (the outcome then stays unknown and is searched for again later).
    reconcile_lookback: Annotated[Int, Field(ge=1)] = 10_000
    give_up_after: Interval = timedelta(hours=24)  # a message undelivered this long fails
    # How long after the request timeout ChatKitty may still store a send it was handling:
    # a send of unknown outcome is not concluded "not sent" sooner after its claim.
    late_store_margin_s: NonNegFloat = 60.0

    @model_validator(mode="after")
    def _backoff(self) -> DeliveryConfig:
        problems = Problems()
        if self.backoff_max_s < self.backoff_base_s:
            problems.add(
                ("backoff_max_s",),
                f"must be >= backoff_base_s ({num(self.backoff_max_s)} < "
                f"{num(self.backoff_base_s)})",
                "must be >= backoff_base_s",
            )
        if self.give_up_after.total_seconds() < self.backoff_max_s:
            problems.add(
                ("give_up_after",),
                f"must be at least backoff_max_s ({num(self.give_up_after.total_seconds())}s"
                f" < {num(self.backoff_max_s)}s): a message must get more than one try",
                "must be >= backoff_max_s",
            )
        problems.raise_if_any()
        return self


class MessagesConfig(Model):
    """How messages are shaped, for every subscription (each may override a key)."""

    threads: StrictBool = True  # later events about a listing reply under its first post
    photos: StrictBool = False  # post the listing's primary photo with the text
    # More messages than this for one channel from one poll become one digest; 0: never.
    digest_over: NonNegInt = 10


class LogConfig(Model):
    """Log level and format (``auto``: JSON unless stdout is a terminal)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class CommandsConfig(Model):
    """Chat commands (``/listings …``): where they are read, who may change things."""

    # Channel ids or names; commands posted elsewhere are not read. Empty: commands off.
    enabled_channels: tuple[int | str, ...] = ()
    # Who may subscribe, pause, resume, unsubscribe; list/explain/help are for everyone.
    allow: Literal["moderators", "members"] = "moderators"
    max_subscriptions_per_channel: Annotated[Int, Field(ge=0, le=1000)] = 20
    poll_interval: Interval = timedelta(seconds=15)
    # What a chat subscription's first poll does with what already matches.
    first_run: Literal["baseline", "post"] = "baseline"
    per_user_per_minute: Annotated[Int, Field(ge=1, le=1000)] = 6

    @field_validator("enabled_channels", mode="before")
    @classmethod
    def _channels(cls, value: Any) -> Any:
        if value is None:
            return ()
        items = value if isinstance(value, list | tuple) else [value]
        problems = Problems()
        out: list[int | str] = []
        for i, item in enumerate(items):
            try:
                out.append(channel_ref(item))
            except PydanticCustomError as err:
                ctx = err.context or {}
                problems.add((i,), str(ctx.get("text", err)), str(ctx.get("safe", err)))
        problems.raise_if_any()
        return tuple(dict.fromkeys(out))


class Config(Model):
    """The whole configuration file."""

    state: StateConfig
    chatkitty: ChatKittyConfig
    sources: SourcesConfig
    subscriptions: tuple[Subscription, ...]
    ops: OpsConfig = OpsConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    messages: MessagesConfig = MessagesConfig()
    log: LogConfig = LogConfig()
    commands: CommandsConfig = CommandsConfig()

    @field_validator("subscriptions", mode="before")
    @classmethod
    def _some_subscriptions(cls, value: Any, info: ValidationInfo) -> Any:
        # Checked on the raw list: a length constraint would count only the valid items.
        # With chat commands enabled, the subscriptions may all come from the chat.
        commands = (info.context or {}).get("raw_commands")
        if isinstance(value, list | tuple) and not value and not commands:
            raise problem(
                "at least one subscription is required "
                "(or enable chat commands: commands.enabled_channels)"
            )
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _share_within(cls, data: Any, handler: ModelWrapValidatorHandler[Config]) -> Config:
        # Equal values are shared within one file's subscriptions; once it is validated
        # (or refused) the table lets go of them, so a reload does not keep the old ones.
        try:
            return handler(data)
        finally:
            forget_shared()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        subs = ((i, s.name, s.source) for i, s in enumerate(self.subscriptions))
        cross_problems(subs, set(self.sources.configured())).raise_if_any()
        return self

    def messages_for(self, sub: Subscription) -> MessagesConfig:
        """The ``messages`` settings for ``sub``: its own overrides, else the top level."""
        overrides = {
            key: getattr(sub, key)
            for key in ("threads", "photos", "digest_over")
            if getattr(sub, key) is not None
        }
        return self.messages.model_copy(update=overrides) if overrides else self.messages


def config_warnings(config: Config) -> list[str]:
    """What is valid but probably not what was meant, by key path (``check-config``)."""
    return [
        f"subscriptions[{i}].filters{where}: {text}"
        for i, sub in enumerate(config.subscriptions)
        for where, text in sub.filters.warnings()
    ]


def _model_fields_at(loc: Loc, raw: Any) -> tuple[type[BaseModel] | None, str | None]:
    """The model that owns the last key of ``loc``, and the subscription's source if any."""
    model: type[BaseModel] | None = Config
    node = raw
    source: str | None = None
    for part in loc[:-1]:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("source"), str):
                source = node["source"]
            continue
        node = node.get(part) if isinstance(node, dict) else None
        if model is None or part not in model.model_fields:
            return None, source
        if model is Subscription and part == "filters":
            model = FILTERS_BY_SOURCE.get(source or "")
        else:
            model = _inner_model(model.model_fields[part].annotation)
    return model, source


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin in {Union, types.UnionType, tuple, Annotated}:
        for arg in get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def unknown_key(loc: Loc, raw: Any) -> str:
    key = str(loc[-1])
    model, source = _model_fields_at(loc, raw)
    if model is None:
        return f"unknown key {key!r}"
    names = sorted(model.model_fields)
    allowed = f"(allowed: {', '.join(names)})"
    if model in {KotohomesFilters, KatoFilters} and source in RESERVED_FILTER_KEYS:
        reason = RESERVED_FILTER_KEYS[source].get(key)
        if reason:
            return f"unknown key {key!r} - not a filter: {reason}"
        if key.endswith("[]") and key[:-2] in names:
            return f"unknown key {key!r}; write {key[:-2]!r} (listingbot adds the [] itself)"
        for other, filters in FILTERS_BY_SOURCE.items():
            if other != source and key in filters.model_fields:
                return f"unknown key {key!r} - a {other} filter, not a {source} one {allowed}"
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{hint} {allowed}"
