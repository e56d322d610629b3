"""Command-line interface: `python -m app --help`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.cache.clock import KeyClock
from app.cache.publish import Publisher, bind
from app.core.config import get_settings
from app.core.db import create_engine, create_sessionmaker
from app.users.models import Role

cli = typer.Typer(help="Newsroom API administration.", no_args_is_help=True, add_completion=False)

T = TypeVar("T")


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one session and commit it; roll back everything if it fails."""

    async def main() -> T:
        settings = get_settings()
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        # Running servers must not keep serving what this command changes: the keys its
        # writes touch are invalidated as a server's would be (this machine's clock,
        # PostgreSQL NOTIFY for the others, the CDN through the outbox).
        clock = KeyClock(settings.cache_generation_file) if settings.response_cache else None
        cdn = settings.cdn_purge != "none"
        bind(sessionmaker, Publisher(clock, notify=not settings.is_sqlite, cdn=cdn))
        try:
            async with sessionmaker() as session:
                result = await work(session)
                await session.commit()
        finally:
            await engine.dispose()
            if clock is not None:
                clock.close()
        return result

    return asyncio.run(main())


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


@cli.command()
def migrate(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the database migrations (alembic upgrade)."""
    from alembic import command
    from alembic.config import Config

    from app.core.config import PROJECT_ROOT

    command.upgrade(Config(str(PROJECT_ROOT / "alembic.ini")), revision)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(envvar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT")] = 8000,
    workers: Annotated[int, typer.Option(envvar="WORKERS", min=1, max=64)] = 1,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Apply migrations before serving.")
    ] = True,
) -> None:
    """Serve the API with uvicorn (the container's start command)."""
    import uvicorn

    from app.core import server
    from app.core.config import get_settings

    # The workers read their settings from the environment: let them know where they are.
    os.environ["HOST"], os.environ["PORT"] = host, str(port)
    get_settings.cache_clear()
    if migrate_first:
        migrate()
    settings = get_settings()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        proxy_headers=False,
        timeout_graceful_shutdown=20,
        http=server.PROTOCOL_PATH,
        timeout_keep_alive=settings.http_keepalive_seconds,
        limit_concurrency=settings.http_max_connections,
        backlog=settings.http_backlog,
    )


@cli.command("create-user")
def create_user(
    username: Annotated[str, typer.Option(help="Login name.")],
    password: Annotated[str, typer.Option(help="At least 10 characters.")],
    role: Annotated[Role, typer.Option(help="The user's role.")] = Role.author,
    display_name: Annotated[str | None, typer.Option(help="Byline name.")] = None,
) -> None:
    """Create a user with the given role."""
    from pydantic import ValidationError

    from app.core.errors import DomainError
    from app.core.security import Passwords
    from app.users import service as users
    from app.users.schemas import UserCreate

    try:
        data = UserCreate(
            username=username,
            password=password,
            role=role,
            display_name=display_name,
        )
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        raise _fail(f"invalid {fields}") from None
    try:
        # One hash at a time: no request shares this process.
        user = _run(lambda s: users.create(s, data, passwords=Passwords(1)))
    except DomainError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"created {user.role} {user.username} (id {user.id})")


@cli.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(help="Login name.")],
    password: Annotated[str, typer.Option(help="At least 10 characters.")],
) -> None:
    """Create an admin user."""
    create_user(username=username, password=password, role=Role.admin, display_name=None)


@cli.command("create-token")
def create_token(
    username: Annotated[str, typer.Option(help="Owner of the token.")],
    scope: Annotated[
        list[str] | None, typer.Option(help="Narrow to this scope; repeat for more.")
    ] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
) -> None:
    """Create an API token and print it, alone, on stdout (it is never shown again)."""
    from app.auth import service as auth
    from app.core.errors import DomainError
    from app.core.security import SCOPES
    from app.users import service as users

    unknown = sorted(set(scope or []) - set(SCOPES))
    if unknown:
        raise _fail(f"unknown scope {', '.join(unknown)}; known: {', '.join(SCOPES)}")

    async def work(session: AsyncSession) -> str:
        user = await users.by_username(session, username)
        if user is None or not user.is_active:
            raise _fail(f"no active user {username!r}")
        lifetime = timedelta(days=expires_in_days) if expires_in_days else None
        _, raw = await auth.issue(
            session, user, kind="api", name=name, scopes=scope or None, lifetime=lifetime
        )
        return raw

    try:
        typer.echo(_run(work))
    except DomainError as exc:
        raise _fail(str(exc)) from None


@cli.command("revoke-token")
def revoke_token(
    token: Annotated[str, typer.Argument(help="The token itself, or its numeric id.")],
) -> None:
    """Revoke an API token; it stops working on its next request."""
    from app.auth import service as auth
    from app.core.errors import NotFound

    async def work(session: AsyncSession) -> int:
        found = await (
            auth.get(session, int(token)) if token.isdigit() else auth.by_secret(session, token)
        )
        await auth.revoke(session, found)
        return found.id

    try:
        token_id = _run(work)
    except NotFound:
        raise _fail("no such token") from None
    typer.echo(f"revoked token {token_id}")


@cli.command("anonymise-comments")
def anonymise_comments(
    days: Annotated[
        int | None, typer.Option(min=1, help="Retention in days (COMMENT_IP_RETENTION_DAYS).")
    ] = None,
) -> None:
    """Erase commenters' IP addresses and user agents past the retention period, and expired
    idempotency keys. Run it daily from cron."""
    from app.comments import service as comments
    from app.core import idempotency

    retention = days or get_settings().comment_ip_retention_days

    async def work(session: AsyncSession) -> tuple[int, int]:
        return (
            await comments.anonymise_old(session, retention),
            await idempotency.purge_expired(session),
        )

    anonymised, purged = _run(work)
    typer.echo(
        f"anonymised {anonymised} comments older than {retention} days; "
        f"purged {purged} idempotency keys"
    )


@cli.command("seed-demo")
def seed_demo() -> None:
    """Load the demo data once (does nothing if it is already there)."""
    from app.demo import load_demo

    if get_settings().environment == "production":
        raise _fail("refusing to load demo data with ENVIRONMENT=production")
    typer.echo(_run(load_demo))


@cli.command("import-wxr")
def import_wxr(
    file: Annotated[str, typer.Argument(help="The WordPress export (WXR 1.1 or 1.2).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Import and report, then roll everything back.")
    ] = False,
    uploads: Annotated[
        str | None,
        typer.Option(
            "--uploads",
            metavar="DIR",
            help="The old site's wp-content/uploads folder: attachments' files are read there.",
        ),
    ] = None,
    fetch_attachments: Annotated[
        bool,
        typer.Option(
            "--fetch-attachments",
            help="Download attachments' files from their URLs (after --uploads, for what it "
            "lacks); public addresses only unless WEBHOOK_ALLOW_PRIVATE_TARGETS, at most "
            "MEDIA_MAX_BYTES each.",
        ),
    ] = False,
) -> None:
    """Import a WordPress export: authors, categories, tags, posts and their comments, and
    with --uploads or --fetch-attachments its images into the media library, in one
    transaction. Running it again updates what an earlier run imported."""
    from pathlib import Path

    from app.importer import attachments, console
    from app.importer.service import Report, import_file
    from app.importer.wxr import WxrError
    from app.media.service import Library

    path = Path(file)
    if not path.is_file():
        raise _fail(f"no file {file}")
    if uploads is not None and not Path(uploads).is_dir():
        raise _fail(f"no folder {uploads}")
    settings, size = get_settings(), path.stat().st_size

    async def work(session: AsyncSession) -> Report:
        lib = Library(settings)
        folder = (
            attachments.UploadsFolder(Path(uploads), settings.media_max_bytes) if uploads else None
        )
        downloader = attachments.Downloader(settings) if fetch_attachments else None
        files: attachments.FileSource | None = folder or downloader
        if folder is not None and downloader is not None:
            files = attachments.Either(folder, downloader)
        try:
            with console.progress(size) as advance:
                report = await import_file(
                    session,
                    path,
                    zone=settings.zone,
                    progress=advance,
                    max_element_bytes=settings.wxr_max_element_bytes,
                    embeds=settings.embed_providers,
                    sources=attachments.Sources(lib, files),
                )
            # Committed here, not by _run: the files stored go if the rows do not.
            committed = False
            try:
                if dry_run:
                    await session.rollback()
                else:
                    await session.commit()
                    committed = True
            finally:
                if not committed:
                    await lib.discard(report.new_files)
        finally:
            if downloader is not None:
                await downloader.aclose()
            await lib.storage.aclose()
        return report

    try:
        report = _run(work)
    except WxrError as exc:
        raise _fail(f"{file}, {exc}; nothing was imported") from None
    console.print_report(report, dry_run=dry_run)


def main() -> None:
    """The command line; settings that cannot be used end it with one line each, naming the
    setting, instead of a traceback."""
    from pydantic import ValidationError

    try:
        cli(standalone_mode=True)
    except ValidationError as exc:
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            where = ".".join(str(part) for part in error["loc"]).upper()
            typer.echo(f"error: {where + ': ' if where else ''}{message}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
