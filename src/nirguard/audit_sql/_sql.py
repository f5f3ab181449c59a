"""Opening the database: URL checks, drivers, SQLite pragmas. Errors never echo the URL."""

from __future__ import annotations

from typing import Any

from nirguard.errors import ConfigurationError

__all__ = ["open_engine"]


def open_engine(url: str, schema: str | None) -> Any:
    """A SQLAlchemy engine for ``url`` (SQLite or PostgreSQL).

    Raises:
        ConfigurationError: SQLAlchemy or the driver is missing, or the URL is unusable.
    """
    try:
        import sqlalchemy
        from sqlalchemy import event
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import StaticPool
    except ModuleNotFoundError:
        raise ConfigurationError(
            "the SQL audit store needs SQLAlchemy: pip install 'nirguard[sql]'"
        ) from None
    if not isinstance(url, str):
        raise ConfigurationError("url must be a database URL string")
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigurationError("not a database URL (sqlite:///..., postgresql://...)") from None
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {}
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        else:
            options = {"connect_args": {"check_same_thread": False}}
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        options = {"pool_pre_ping": True}
    else:
        raise ConfigurationError("the SQL audit store supports sqlite:// and postgresql:// URLs")
    try:
        engine = sqlalchemy.create_engine(parsed, **options)
        if backend == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        elif schema is not None:
            with engine.begin() as conn:
                conn.execute(sqlalchemy.schema.CreateSchema(schema, if_not_exists=True))
        else:
            with engine.connect():
                pass
    except ModuleNotFoundError:
        raise ConfigurationError(
            "the PostgreSQL driver is missing: pip install 'nirguard[postgres]'"
        ) from None
    except Exception as exc:
        raise ConfigurationError(f"cannot open the audit database ({type(exc).__name__})") from None
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the console) never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
