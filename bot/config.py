"""Settings from VEILLE_* environment variables and an optional .env file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

from .errors import ConfigError

# never echoed in an error (a database URL may carry a password)
SECRET_SETTINGS = ("VEILLE_TELEGRAM_TOKEN", "VEILLE_HTTP_AUTH", "VEILLE_DATABASE_URL",
                   "VEILLE_LLM_KEY")
USER_AGENT = "veille/{version} (news-monitoring feed reader; conditional GET, polite intervals)"


class Settings(BaseSettings):
    """Every knob of a running veille; built once in app.py and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="VEILLE_", env_file=".env", extra="ignore", frozen=True
    )

    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    console: bool = False  # with a token: also print alerts on the console
    database_url: str = "sqlite:///state/veille.db"
    watchlists: Path = Path("watchlists")
    admins: Annotated[tuple[int, ...], NoDecode] = ()
    allow_private_urls: bool = False
    http_port: int | None = Field(default=None, ge=1, le=65535)
    http_host: str = "127.0.0.1"  # the container sets 0.0.0.0
    http_auth: SecretStr | None = None  # "user:password": basic auth on / and /metrics

    # polling
    concurrency: int = Field(default=50, ge=1, le=1000)
    per_host_concurrency: int = Field(default=4, ge=1, le=100)
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    user_agent: str | None = None
    first_poll_max_age_hours: float = Field(default=24.0, ge=0)
    default_interval: int = Field(default=600, ge=30)
    jitter: float = Field(default=0.1, ge=0, le=0.5)  # fraction of the interval
    max_backoff: int = Field(default=6 * 3600, ge=60)
    retention_days: float = Field(default=30.0, ge=1)  # seen rows are refreshed every 6 h
    news_search: bool = True  # poll Google/Bing News searches for topics with `search:`
    parse_workers: int = Field(default=0, ge=0, le=64)  # 0: one per core
    startup_spread: float = Field(default=30.0, ge=0)  # seconds over which first polls spread

    # summaries and stories (summarize.py, article.py, llm.py, surges)
    fetch_articles: bool = False  # fetch the article page when the feed's text is too thin
    llm_url: str | None = None  # an OpenAI-compatible base URL (…/v1); unset: no LLM summaries
    llm_model: str | None = None
    llm_key: SecretStr | None = None
    llm_timeout: float = Field(default=20.0, gt=0)
    surge_hours: float = Field(default=3.0, gt=0)  # the recent window counted
    surge_baseline_days: float = Field(default=7.0, gt=0)  # the days before it: the usual rate
    surge_factor: float = Field(default=3.0, ge=1)  # a surge: this many times the usual rate…
    surge_min_stories: int = Field(default=5, ge=1)  # …and at least this many new stories
    surge_cooldown_hours: float = Field(default=12.0, ge=0)
    # how long a delivery holds the alerts it leased before another process may take them
    lease_seconds: float = Field(default=120.0, ge=1)
    # several instances (queue.py): on PostgreSQL `veille run` polls and delivers through
    # procrastinate's queue ("auto"); "off" keeps one instance doing everything itself
    queue: Literal["auto", "off"] = "auto"

    # watching the watch (bot/watch.py): admins are told once, and once when it ends, when…
    watch_failing_hours: float = Field(default=6.0, ge=0)  # …a feed has failed this long
    watch_silence_hours: float = Field(default=24.0, ge=0)  # …a feed brought nothing for
    watch_silence_factor: float = Field(default=5.0, ge=1)  # max(that, this × its usual gap)
    watch_topic_min_stories: int = Field(default=5, ge=1)  # …a topic with this many stories
    watch_topic_quiet_hours: float = Field(default=72.0, ge=0)  # in 14 days had none this long
    # (0 hours turns a check off)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator("admins", mode="before")
    @classmethod
    def _split_admins(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(int(x) for x in v.replace(";", ",").split(",") if x.strip())
        return v

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(v)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL SQLAlchemy understands ({exc})") from None
        return v

    @field_validator("http_auth")
    @classmethod
    def _check_http_auth(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and ":" not in v.get_secret_value():
            raise ValueError("must be user:password")
        return v

    @field_validator("telegram_api_url")
    @classmethod
    def _check_api_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    def agent(self) -> str:
        from . import __version__

        return self.user_agent or USER_AGENT.format(version=__version__)


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Build Settings, turning a validation failure into a ConfigError naming the variable."""
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "VEILLE_" + "_".join(str(p) for p in err["loc"]).upper()
            value = err.get("input")
            shown = "***" if name in SECRET_SETTINGS else repr(value)
            lines.append(f"{name}={shown}: {err['msg']}")
        raise ConfigError("invalid setting: " + "; ".join(lines)) from None
