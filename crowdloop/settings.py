"""Process-wide settings, read from the environment (prefix CROWDLOOP_)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    return f"sqlite:///{Path.home() / '.crowdloop' / 'crowdloop.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CROWDLOOP_", extra="ignore")

    # The one database setting: sqlite:///path.db (default) or
    # postgresql+psycopg://user@host:5432/db to scale out.
    database_url: str = default_database_url()


def get_settings() -> Settings:
    return Settings()
