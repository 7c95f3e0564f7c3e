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


# --- which database a command reads ----------------------------------------------------------

ENV_DATABASE_URL = "CROWDLOOP_DATABASE_URL"
# Where `crowdloop demo` keeps its database when run with its default output folder.
DEMO_DATABASE = Path("crowdloop-demo") / "crowdloop.db"


def database_url_for(value: str) -> str:
    """`--db` takes a database URL or a path to a SQLite file."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def database_chosen() -> bool:
    """True when the user picked the database (`--db` or CROWDLOOP_DATABASE_URL)."""
    import os

    return bool(os.environ.get(ENV_DATABASE_URL))


def known_databases() -> list[Path]:
    """SQLite files a command looks in when no database was chosen, existing ones only:
    the default one, then the demo's in the working directory."""
    home = Path(default_database_url().removeprefix("sqlite:///"))
    out = []
    for path in (home, DEMO_DATABASE.resolve()):
        if path.is_file() and path not in out:
            out.append(path)
    return out


def sqlite_campaigns(path: Path) -> dict[str, str]:
    """Campaign ids and statuses in a SQLite database file, read-only (no side effects)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        rows = con.execute("SELECT id, status FROM campaign").fetchall()
    except sqlite3.Error:
        return {}
    finally:
        con.close()
    return {str(i): str(s).lower() for i, s in rows}


def use_database(url: str) -> None:
    """Point this process (and the runs it starts) at `url`."""
    import os

    os.environ[ENV_DATABASE_URL] = url


def locate_campaign(campaign: str) -> Path | None:
    """When no database was chosen: the known database holding `campaign`, if any."""
    for path in known_databases():
        if campaign in sqlite_campaigns(path):
            return path
    return None


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
