"""Importing a WordPress export: `python -m app import-wxr FILE`.

The fixtures in tests/fixtures/wxr/ are written by hand after real WordPress exports; the
comments in site-1.2.xml say what each entry is there to prove."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.articles.models import Article, ArticleStatus, CommentStatus, Revision
from app.categories.models import Category
from app.comments import service as comments
from app.comments.models import Comment, CommentState
from app.core.config import Settings
from app.importer.attachments import (
    Downloader,
    FileSource,
    SourceRefused,
    Sources,
    UploadsFolder,
)
from app.importer.service import Report, Tally, import_file, media_import_key, username_for
from app.importer.wxr import Item, WxrError, WxrReader, wpautop
from app.media.models import Media, article_media
from app.media.service import Library
from app.media.storage import files_url
from app.tags.models import Tag
from app.users.models import Role, User
from tests.factories import make_article, make_user
from tests.support import ROOT

FIXTURES = Path(__file__).parent / "fixtures" / "wxr"
SITE = FIXTURES / "site-1.2.xml"
KABUL = ZoneInfo("Asia/Kabul")

# What site-1.2.xml holds, as (imported, updated, unchanged, skipped, failed).
FIRST_RUN = {
    "authors": (4, 0, 0, 0, 0),  # three declared, and "ghost" named only by a post
    "categories": (6, 0, 0, 0, 0),  # five declared, and "breaking" named only by a post
    "tags": (3, 0, 0, 0, 0),
    "articles": (6, 0, 0, 1, 1),  # the trashed post skipped, the unknown status failed
    "comments": (8, 0, 0, 2, 1),  # a pingback and a trackback skipped, "post-trashed" failed
    "pages": (0, 0, 0, 1, 0),
    "attachments": (0, 0, 0, 1, 0),
    "other": (0, 0, 0, 1, 0),  # a nav_menu_item
}


def cli_env(database_url: str, **settings: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "SITE_TIMEZONE": "Asia/Kabul",
        "LOG_LEVEL": "WARNING",
        "PYTHONIOENCODING": "utf-8",
        **settings,
    }


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "import-wxr", *args],
        cwd=ROOT,
        env=cli_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def summary(stdout: str) -> dict[str, tuple[int, ...]]:
    """The rows of the summary table, whatever box characters the terminal got."""
    rows = {}
    for line in stdout.splitlines():
        found = re.match(r"^\W*([a-z]+)\W+(\d+)\W+(\d+)\W+(\d+)\W+(\d+)\W+(\d+)\W*$", line)
        if found:
            rows[found.group(1)] = tuple(int(n) for n in found.groups()[1:])
    return rows


def as_rows(report: Report) -> dict[str, tuple[int, ...]]:
    return {
        kind: (t.imported, t.updated, t.unchanged, t.skipped, t.failed)
        for kind, t in report.tallies.items()
    }


async def run_import(session: AsyncSession, path: Path = SITE) -> Report:
    report = await import_file(session, path, zone=KABUL)
    await session.commit()
    return report


async def row_counts(session: AsyncSession) -> dict[str, int]:
    counts = {}
    for model in (User, Category, Tag, Article, Comment, Revision):
        counts[model.__tablename__] = await session.scalar(select(func.count()).select_from(model))
    await session.rollback()
    return counts


async def article(session: AsyncSession, number: int) -> Article:
    found = await session.scalar(
        select(Article)
        .where(Article.number == number)
        .options(
            selectinload(Article.author),
            selectinload(Article.category),
            selectinload(Article.categories),
            selectinload(Article.tags),
        )
        .execution_options(populate_existing=True)
    )
    assert found is not None, f"no article number {number}"
    return found


async def comments_by_author(session: AsyncSession, article_id: int) -> dict[str, Comment]:
    rows = await session.scalars(
        select(Comment)
        .where(Comment.article_id == article_id)
        .execution_options(populate_existing=True)
    )
    return {c.author_name: c for c in rows}


# --- the command -------------------------------------------------------------------------


@pytest.mark.slow
class TestCommand:
    async def test_summary_counts_every_kind_and_reports_failures_with_lines(
        self, database_url: str, session: AsyncSession
    ) -> None:
        done = cli(database_url, str(SITE))
        assert done.returncode == 0, done.stderr
        assert summary(done.stdout) == FIRST_RUN
        assert "WXR 1.2" in done.stdout
        skipped = next(line for line in done.stdout.splitlines() if line.startswith("skipped:"))
        for why in ("page", "attachment", "nav_menu_item", "pingback", "trackback", "trashed"):
            assert why in skipped
        assert "failed: post 108 'In limbo' (line 379): unknown status 'limbo'" in done.stderr
        assert "comment 22 on post 105" in done.stderr
        assert "(line 308): unknown approval 'post-trashed'" in done.stderr
        assert (await row_counts(session))["articles"] == 6

    async def test_a_dry_run_reports_and_keeps_nothing(
        self, database_url: str, session: AsyncSession
    ) -> None:
        done = cli(database_url, str(SITE), "--dry-run")
        assert done.returncode == 0, done.stderr
        assert summary(done.stdout) == FIRST_RUN
        assert "dry run" in done.stdout
        assert set((await row_counts(session)).values()) == {0}

    async def test_a_truncated_file_names_the_line_exits_1_and_changes_nothing(
        self, database_url: str, session: AsyncSession
    ) -> None:
        await run_import(session)
        before = await row_counts(session)
        # Two whole posts precede the cut: they are written, then rolled back.
        done = cli(database_url, str(FIXTURES / "truncated.xml"))
        assert done.returncode == 1
        assert "line 38" in done.stderr
        assert "malformed" in done.stderr
        assert "nothing was imported" in done.stderr
        assert await row_counts(session) == before
        assert await session.scalar(select(Article.id).where(Article.number == 9201)) is None

    async def test_an_item_without_a_post_type_stops_the_import(
        self, database_url: str, session: AsyncSession
    ) -> None:
        done = cli(database_url, str(FIXTURES / "no-post-type.xml"))
        assert done.returncode == 1
        assert "line 22: <item> without <wp:post_type>" in done.stderr
        assert set((await row_counts(session)).values()) == {0}

    async def test_a_missing_file_is_a_clear_error(self, database_url: str) -> None:
        done = cli(database_url, str(FIXTURES / "nope.xml"))
        assert done.returncode == 1
        assert "no file" in done.stderr


# --- what becomes of each post -----------------------------------------------------------


class TestArticles:
    async def test_a_published_post_keeps_its_fields_and_loses_its_scripts(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await run_import(session)
        post = await article(session, 101)
        assert post.status == ArticleStatus.published
        assert post.published_at == datetime(2017, 11, 24, 8, 23, tzinfo=UTC)  # from the GMT
        assert post.slug == "hello-kabul"
        assert post.excerpt == "A short summary."
        assert post.excerpt_given
        assert post.author.display_name == "Jane Doe"
        assert post.category is not None
        assert post.category.slug == "kabul"  # the first category is the primary one
        assert {c.slug for c in post.categories} == {"kabul", "world"}
        assert [t.slug for t in post.tags] == ["elections", "peace-talks"]
        assert "<strong>Kabul</strong>" in post.body
        for unsafe in ("<script", "stolen cookies", "onclick", "javascript:"):
            assert unsafe not in post.body

        detail = (await client.get("/api/v1/articles/by-number/101")).json()
        assert [c["slug"] for c in detail["breadcrumbs"]] == ["world", "asia", "kabul"]
        assert detail["author"]["display_name"] == "Jane Doe"

    async def test_a_missed_schedule_is_published(
        self, session: AsyncSession, tmp_path: Path
    ) -> None:
        # WordPress leaves a post "future" when its cron did not run at its time.
        missed = tmp_path / "missed.xml"
        text = SITE.read_text(encoding="utf-8")
        missed.write_text(
            text.replace("2099-01-01 10:30:00", "2020-01-01 10:30:00").replace(
                "2099-01-01 06:00:00", "2020-01-01 06:00:00"
            ),
            encoding="utf-8",
        )
        report = await run_import(session, missed)
        assert report.tallies["articles"].failed == FIRST_RUN["articles"][-1]
        post = await article(session, 103)
        assert post.status == ArticleStatus.published
        assert post.published_at == datetime(2020, 1, 1, 6, 0, tzinfo=UTC)

    async def test_statuses_and_dates_follow_wordpress(self, session: AsyncSession) -> None:
        await run_import(session)
        draft = await article(session, 102)
        assert draft.status == ArticleStatus.draft
        assert draft.published_at is None  # an unset GMT date: never published
        assert draft.slug == "chernovik"  # no post_name: from the title, transliterated

        scheduled = await article(session, 103)
        assert scheduled.status == ArticleStatus.scheduled
        assert scheduled.published_at == datetime(2099, 1, 1, 6, 0, tzinfo=UTC)
        assert scheduled.comment_status == CommentStatus.closed

        private = await article(session, 104)
        assert private.status == ArticleStatus.draft
        assert private.published_at == datetime(2017, 11, 25, 7, 0, tzinfo=UTC)
        assert private.author.username == "ghost"
        assert private.category is not None
        assert private.category.slug == "breaking"

        # No GMT date: the local one, on the site's clock (Kabul, +04:30).
        local = await article(session, 106)
        assert local.published_at == datetime(2017, 11, 27, 12, 30, tzinfo=KABUL)

        numbers = set(await session.scalars(select(Article.number)))
        assert numbers == {101, 102, 103, 104, 105, 106}  # not the trash, nor "limbo"

    async def test_non_ascii_slugs_are_decoded_then_transliterated(
        self, session: AsyncSession
    ) -> None:
        await run_import(session)
        assert (await article(session, 105)).slug == "privet-mir"  # привет-мир
        turkish = await article(session, 106)
        assert turkish.slug == "olcum-sehir"  # ölçüm-şehir
        assert [t.slug for t in turkish.tags] == ["olcum"]
        assert turkish.tags[0].name == "Ölçüm"
        novosti = await session.scalar(select(Category).where(Category.slug == "novosti"))
        assert novosti is not None
        assert novosti.name == "Новости"

    async def test_content_without_paragraph_tags_gets_paragraphs(
        self, session: AsyncSession
    ) -> None:
        await run_import(session)
        body = (await article(session, 106)).body
        assert body == (
            "<p>First line of the first paragraph<br>\nand its second line.</p>\n"
            "<p>Second paragraph with <em>emphasis</em>.</p>\n"
            "<p>Third paragraph.</p>"
        )

    async def test_a_password_protected_post_becomes_a_draft(
        self, session: AsyncSession, tmp_path: Path
    ) -> None:
        path = tmp_path / "protected.xml"
        path.write_text(
            '<rss xmlns:dc="http://purl.org/dc/elements/1.1/"'
            ' xmlns:wp="http://wordpress.org/export/1.2/"><channel>\n'
            "<wp:wxr_version>1.2</wp:wxr_version>\n"
            "<item><title>Members only</title><dc:creator>jdoe</dc:creator>"
            "<wp:post_id>7</wp:post_id><wp:status>publish</wp:status>"
            "<wp:post_type>post</wp:post_type><wp:post_password>s3cret</wp:post_password>"
            "<wp:post_date_gmt>2017-11-24 08:23:00</wp:post_date_gmt></item>\n"
            "</channel></rss>\n",
            encoding="utf-8",
        )
        report = await run_import(session, path)
        assert [str(p) for p in report.problems] == [
            "warning: post 7 'Members only' (line 3): "
            "password-protected in WordPress: imported as a draft"
        ]
        assert (await article(session, 7)).status == ArticleStatus.draft

    def test_wpautop_leaves_block_markup_alone(self) -> None:
        assert wpautop("<p>One</p>\n\n<p>Two</p>") == "<p>One</p>\n\n<p>Two</p>"
        assert wpautop("One\r\n\r\nTwo") == "<p>One</p>\n<p>Two</p>"
        assert wpautop("  ") == ""


class TestAuthorsAndTerms:
    async def test_authors_become_users_without_a_usable_password(
        self, session: AsyncSession
    ) -> None:
        await run_import(session)
        users = {u.username: u for u in await session.scalars(select(User))}
        assert set(users) == {"jdoe", "ahmad.k", "Zeynep_O", "ghost"}
        assert {u.role for u in users.values()} == {Role.author}
        assert users["jdoe"].email == "JDoe@example.com"
        assert users["Zeynep_O"].display_name == "Zeynep Öztürk"
        assert users["ghost"].display_name == "Staff", "a login name is never shown"
        assert all(u.password_hash.startswith("$argon2") for u in users.values())

    def test_logins_are_sanitised_to_the_username_rule(self) -> None:
        assert username_for("jdoe") == "jdoe"
        assert username_for("Zeynep Ö") == "Zeynep_O"
        assert username_for("mail@example.com") == "mail_example.com"
        assert username_for("ab") == "wp-ab"
        assert re.fullmatch(r"wp-[0-9a-f]{12}", username_for("@@"))

    async def test_categories_form_the_tree_parents_first_whatever_the_order(
        self, session: AsyncSession
    ) -> None:
        await run_import(session)
        rows = {c.slug: c for c in await session.scalars(select(Category))}
        assert set(rows) == {"world", "asia", "kabul", "uncategorized", "novosti", "breaking"}
        assert rows["world"].parent_id is None
        assert rows["asia"].parent_id == rows["world"].id
        assert rows["kabul"].parent_id == rows["asia"].id
        assert rows["asia"].name == "Asia & Pacific"
        assert rows["asia"].description == "The region."
        assert rows["uncategorized"].parent_id is None
        # Written parent first: ids follow the tree, not the file.
        assert rows["world"].id < rows["asia"].id < rows["kabul"].id

    async def test_wxr_1_1_is_read_too(self, session: AsyncSession) -> None:
        report = await run_import(session, FIXTURES / "site-1.1.xml")
        assert report.version == "1.1"
        old = await article(session, 501)
        assert old.author.display_name == "Old Hand"
        assert old.category is not None
        assert old.category.slug == "archive"
        assert old.body == "<p>An old post.</p>\n<p>With two paragraphs.</p>"
        assert old.comment_count == 1


# --- comments ----------------------------------------------------------------------------


class TestComments:
    async def test_threads_are_rebuilt_when_replies_come_before_their_parents(
        self, session: AsyncSession
    ) -> None:
        await run_import(session)
        found = await comments_by_author(session, (await article(session, 101)).id)
        top, second, third = found["A Reader"], found["Second Level"], found["Third Level"]
        assert (top.parent_id, top.root_id, top.depth) == (None, top.id, 0)
        assert (second.parent_id, second.root_id, second.depth) == (top.id, top.id, 1)
        assert (third.parent_id, third.root_id, third.depth) == (second.id, top.id, 2)

    async def test_statuses_dates_and_private_fields(self, session: AsyncSession) -> None:
        await run_import(session)
        found = await comments_by_author(session, (await article(session, 101)).id)
        assert {name: c.status for name, c in found.items()} == {
            "A Reader": CommentState.approved,
            "Second Level": CommentState.approved,
            "Third Level": CommentState.approved,
            "Held Back": CommentState.pending,
            "Cheap Pills": CommentState.spam,
            "Binned": CommentState.trash,
            "Local Clock": CommentState.approved,
        }  # and no "Another Blog": a pingback
        reader = found["A Reader"]
        assert reader.author_email == "reader@example.com"  # lower-cased
        assert reader.ip_address == "203.0.113.5"
        assert reader.author_url == "https://reader.example"
        assert reader.created_at == datetime(2017, 11, 24, 9, 0, tzinfo=UTC)
        assert reader.content_source == "Good news <script>alert(1)</script>at last."
        assert "<script" not in reader.content_html
        assert found["Second Level"].ip_address is None  # "not-an-address"
        assert found["Second Level"].author_url is None  # "javascript:alert(1)"
        assert 'rel="nofollow ugc noopener"' in found["Second Level"].content_html
        # No GMT date: the local one on the site's clock.
        assert found["Local Clock"].created_at == datetime(2017, 11, 24, 15, 0, tzinfo=KABUL)

    async def test_comment_count_is_the_approved_comments(self, session: AsyncSession) -> None:
        await run_import(session)
        assert (await article(session, 101)).comment_count == 4
        assert (await article(session, 105)).comment_count == 1
        assert (await article(session, 106)).comment_count == 0

    async def test_the_public_api_shows_approved_comments_without_private_fields(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await run_import(session)
        post = await article(session, 101)
        response = await client.get(f"/api/v1/articles/{post.id}/comments")
        assert response.status_code == 200
        items = response.json()["items"]
        assert [(c["author_name"], c["depth"]) for c in items] == [
            ("A Reader", 0),
            ("Second Level", 1),
            ("Third Level", 2),
            ("Local Clock", 0),
        ]
        assert all("author_email" not in c and "ip_address" not in c for c in items)
        for private in ("@example", "203.0.113.5", "2001:db8::3"):
            assert private not in response.text


# --- running it again --------------------------------------------------------------------


class TestRunningAgain:
    async def test_a_second_run_updates_in_place_and_keeps_a_revision(
        self, session: AsyncSession, tmp_path: Path
    ) -> None:
        await run_import(session)
        ids = {a.number: a.id for a in await session.scalars(select(Article))}
        before = await row_counts(session)
        assert before["article_revisions"] == 0

        changed = tmp_path / "changed.xml"
        text = SITE.read_text(encoding="utf-8")
        changed.write_text(
            text.replace("<![CDATA[Published post]]>", "<![CDATA[Published post, corrected]]>"),
            encoding="utf-8",
        )
        report = await run_import(session, changed)

        # Only the corrected post is updated: a re-run tells what it changed.
        assert as_rows(report) == {
            "authors": (0, 0, 3, 0, 0),
            "categories": (0, 0, 5, 0, 0),
            "tags": (0, 0, 3, 0, 0),
            "articles": (0, 1, 5, 1, 1),
            "comments": (0, 0, 8, 2, 1),
            "pages": (0, 0, 0, 1, 0),
            "attachments": (0, 0, 0, 1, 0),
            "other": (0, 0, 0, 1, 0),
        }
        after = await row_counts(session)
        assert after == {**before, "article_revisions": 1}
        assert {a.number: a.id for a in await session.scalars(select(Article))} == ids
        post = await article(session, 101)
        assert post.title == "Published post, corrected"
        assert post.slug == "hello-kabul"
        revision = await session.scalar(select(Revision).where(Revision.article_id == post.id))
        assert revision is not None
        assert revision.title == "Published post"

    async def test_an_unchanged_article_is_not_touched(self, session: AsyncSession) -> None:
        await run_import(session)
        stamp = {a.id: (a.version, a.updated_at) for a in await session.scalars(select(Article))}
        await run_import(session)
        rows = await session.scalars(select(Article).execution_options(populate_existing=True))
        assert {a.id: (a.version, a.updated_at) for a in rows} == stamp

    async def test_numbers_held_by_other_articles_are_not_taken_over(
        self, session: AsyncSession
    ) -> None:
        desk = await make_user(session, username="desk")
        ours = [
            await make_article(session, desk, title="Our own story", number=101),
            await make_article(session, desk, title="Our other story", number=102),
        ]
        report = await run_import(session)
        warnings = [str(p) for p in report.problems if not p.failed]
        assert any("number 101 belongs to another article" in w for w in warnings)
        # Above the export's highest post id (108), so no later post lost its own number.
        assert {a.number: a.slug for a in await session.scalars(select(Article))} == {
            101: ours[0].slug,
            102: ours[1].slug,
            103: "scheduled-post",
            104: "private-note",
            105: "privet-mir",
            106: "olcum-sehir",
            109: "hello-kabul",
            110: "chernovik",  # the draft without a slug
        }

        again = await run_import(session)  # found by slug and author: no duplicates
        assert again.tallies["articles"] == Tally(imported=0, unchanged=6, skipped=1, failed=1)
        assert await session.scalar(select(func.count()).select_from(Article)) == 8

    async def test_a_comment_erased_on_request_is_not_restored(self, session: AsyncSession) -> None:
        await run_import(session)
        assert await comments.erase(session, "reader@example.com", delete_content=False) == 1
        await session.commit()
        before = await row_counts(session)

        report = await run_import(session)
        assert report.skipped["erased comment"] == 1
        assert await row_counts(session) == before
        emails = set(await session.scalars(select(Comment.author_email)))
        assert "reader@example.com" not in emails


class TestReader:
    def write(self, tmp_path: Path, body: str) -> Path:
        path = tmp_path / "export.xml"
        path.write_text(body, encoding="utf-8")
        return path

    def test_entity_declarations_are_refused(self, tmp_path: Path) -> None:
        path = self.write(
            tmp_path,
            '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY boom "boom">\n]>\n'
            "<rss><channel><title>&boom;</title></channel></rss>\n",
        )
        with pytest.raises(WxrError, match="entity declarations") as caught:
            list(WxrReader(path))
        assert caught.value.line == 3

    def test_a_plain_rss_feed_is_not_an_export(self, tmp_path: Path) -> None:
        path = self.write(
            tmp_path, "<rss><channel><item><title>News</title></item></channel></rss>"
        )
        with pytest.raises(WxrError, match="not a WordPress export"):
            list(WxrReader(path))

    def test_an_unknown_version_is_refused(self, tmp_path: Path) -> None:
        path = self.write(
            tmp_path,
            '<rss xmlns:wp="http://wordpress.org/export/2.0/"><channel>\n'
            "<wp:wxr_version>2.0</wp:wxr_version></channel></rss>",
        )
        with pytest.raises(WxrError, match=r"line 2: WXR version '2.0' is not supported"):
            list(WxrReader(path))


# --- a large export ----------------------------------------------------------------------

PARAGRAPH = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40 + "</p>\n"
# Page builders keep their layouts in post meta: often most of an export's bytes.
BUILDER_DATA = '[{"id":"3f2a","elType":"section","settings":{"layout":"boxed"}},' * 500 + "{}]"


def write_export(path: Path, posts: int, *, meta: bool, huge_mib: int = 0) -> None:
    """An export of `posts` posts of 7 KB each (and 30 KB of builder data with `meta`), then
    with `huge_mib` one post "Huge one" of that many MiB, written as it goes."""
    postmeta = (
        f"<wp:postmeta><wp:meta_key>_builder_data</wp:meta_key>"
        f"<wp:meta_value><![CDATA[{BUILDER_DATA}]]></wp:meta_value></wp:postmeta>"
        if meta
        else ""
    )
    with path.open("w", encoding="utf-8") as out:
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<rss version="2.0" xmlns:excerpt="http://wordpress.org/export/1.2/excerpt/"'
            ' xmlns:content="http://purl.org/rss/1.0/modules/content/"'
            ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
            ' xmlns:wp="http://wordpress.org/export/1.2/">\n<channel>\n'
            "<wp:wxr_version>1.2</wp:wxr_version>\n"
            "<wp:author><wp:author_login>bulk</wp:author_login>"
            "<wp:author_display_name>Bulk Writer</wp:author_display_name></wp:author>\n"
            "<wp:category><wp:category_nicename>news</wp:category_nicename>"
            "<wp:cat_name>News</wp:cat_name></wp:category>\n"
        )
        for n in range(1, posts + 1):
            out.write(
                f"<item><title>Post {n}</title><dc:creator>bulk</dc:creator>"
                f"<content:encoded><![CDATA[{PARAGRAPH * 3}]]></content:encoded>"
                f"<wp:post_id>{n}</wp:post_id>"
                "<wp:post_date_gmt>2020-01-01 10:00:00</wp:post_date_gmt>"
                f"<wp:post_name>post-{n}</wp:post_name><wp:status>publish</wp:status>"
                "<wp:post_type>post</wp:post_type>"
                '<category domain="category" nicename="news">News</category>'
                f"{postmeta}</item>\n"
            )
        if huge_mib:
            out.write("<item><title>Huge one</title>\n<content:encoded><![CDATA[")
            for _ in range(huge_mib):
                out.write("<p>" + "a" * ((1 << 20) - 7) + "</p>")
            out.write(
                "]]></content:encoded><wp:post_id>999999</wp:post_id>"
                "<wp:status>publish</wp:status><wp:post_type>post</wp:post_type></item>\n"
            )
        out.write("</channel>\n</rss>\n")


# Few enough posts to import quickly, in a file large enough to show if it were held whole.
POSTS = 300


class TestLargeExport:
    def test_the_reader_holds_one_entry_at_a_time(self, tmp_path: Path) -> None:
        export = tmp_path / "big.xml"
        write_export(export, 3000, meta=False)
        size = export.stat().st_size
        tracemalloc.start()
        try:
            items = sum(1 for _ in WxrReader(export))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert items == 3002  # the author, the category and the posts
        assert peak < size / 20, f"peak {peak} bytes reading {size} bytes"

    @pytest.mark.slow
    async def test_a_large_import_streams_in_flat_memory(
        self, session: AsyncSession, tmp_path: Path
    ) -> None:
        export = tmp_path / "big.xml"
        write_export(export, POSTS, meta=True)
        size = export.stat().st_size
        tracemalloc.start()
        try:
            report = await import_file(session, export, zone=KABUL)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await session.rollback()
        assert report.tallies["articles"].imported == POSTS
        # The whole file never sits in memory: what is held is one post and the caches.
        assert peak < size / 3, f"peak {peak} bytes importing {size} bytes"


def import_measured(database_url: str, export: Path, **settings: str) -> tuple[int, str, int]:
    """Run `import-wxr` in a process of its own: its exit code, its stderr, and its peak
    resident memory in bytes (the kernel's count, read as the child is reaped)."""
    with (export.parent / f"{export.name}.err").open("w+") as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "app", "import-wxr", str(export)],
            cwd=ROOT,
            env=cli_env(database_url, **settings),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return child.returncode, err.read(), usage.ru_maxrss * 1024  # KiB on Linux


class TestOversizedElement:
    async def test_a_huge_element_stops_the_import_early_and_keeps_nothing(
        self, database_url: str, session: AsyncSession, tmp_path: Path
    ) -> None:
        small = tmp_path / "small.xml"
        write_export(small, 20, meta=False)
        huge = tmp_path / "huge.xml"
        write_export(huge, 20, meta=False, huge_mib=64)
        cap = {"WXR_MAX_ELEMENT_BYTES": str(1 << 20)}

        code, err, peak = import_measured(database_url, huge, **cap)
        assert code == 1, err
        assert "<content:encoded> of the item 'Huge one'" in err
        assert "more than 1048576 bytes" in err
        assert "WXR_MAX_ELEMENT_BYTES" in err
        assert "nothing was imported" in err
        # The 20 posts before it are not written either: the file is checked whole first.
        assert set((await row_counts(session)).values()) == {0}

        small_code, small_err, small_peak = import_measured(database_url, small, **cap)
        assert small_code == 0, small_err
        growth = peak - small_peak
        assert growth < 32 << 20, f"peak {peak >> 20} MiB, {small_peak >> 20} MiB for a small file"

    def test_a_tag_or_comment_that_runs_on_is_refused(self, tmp_path: Path) -> None:
        for opening, closing in (("<!-- ", " -->"), ('<item title="', '"/>')):
            path = tmp_path / "export.xml"
            with path.open("w") as out:
                out.write(
                    '<rss xmlns:wp="http://wordpress.org/export/1.2/"><channel>\n'
                    "<wp:wxr_version>1.2</wp:wxr_version>\n" + opening
                )
                for _ in range(3):
                    out.write("a" * (1 << 20))
                out.write(closing + "</channel></rss>")
            with pytest.raises(WxrError, match="runs on for more than 1048576 bytes"):
                list(WxrReader(path, max_element_bytes=1 << 20))


# --- attachments -------------------------------------------------------------------------

ATTACHMENTS = FIXTURES / "attachments.xml"
OLD_SITE = "https://old.example"
GPS_IFD = 0x8825


def photo(path: Path, width: int, height: int, *, gps: bool = False) -> None:
    """A JPEG at `path`; with `gps`, EXIF saying where it was taken, as phones write it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if gps:
        exif[0x010F] = "PhoneMaker"
        exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 22.0, 3.5), 3: "E", 4: (4.0, 53.0, 1.2)})
    Image.new("RGB", (width, height), (30, 90, 160)).save(path, "JPEG", exif=exif)


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    """The old site's wp-content/uploads: two of the export's four attachments, and a file
    nobody names."""
    root = tmp_path / "uploads"
    photo(root / "2024" / "05" / "harbour-scaled.jpg", 2400, 1600, gps=True)
    photo(root / "2024" / "05" / "boats.jpg", 800, 600)
    (root / "2024" / "05" / "report.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    (tmp_path / "secret.jpg").write_bytes(b"outside the folder")
    return root


def sources_for(app: FastAPI, files: FileSource | None) -> Sources:
    library: Library = app.state.media
    return Sources(library, files)


def folder(root: Path) -> UploadsFolder:
    return UploadsFolder(root, 25 << 20)


async def import_attachments(
    session: AsyncSession, sources: Sources, path: Path = ATTACHMENTS
) -> Report:
    report = await import_file(session, path, zone=KABUL, sources=sources)
    await session.commit()
    return report


async def media_by_key(session: AsyncSession) -> dict[str, Media]:
    rows = await session.scalars(select(Media).execution_options(populate_existing=True))
    return {m.import_key or "": m for m in rows}


def stored_files(app: FastAPI) -> set[Path]:
    root = app.state.media.settings.media_root
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


class TestAttachments:
    async def test_images_become_media_with_their_words_and_posts_show_them(
        self, app: FastAPI, session: AsyncSession, uploads: Path
    ) -> None:
        report = await import_attachments(session, sources_for(app, folder(uploads)))
        assert as_rows(report)["attachments"] == (2, 0, 0, 1, 1)
        assert as_rows(report)["articles"] == (2, 0, 0, 0, 0)

        media = await media_by_key(session)
        assert set(media) == {"wp:old.example:301", "wp:old.example:302"}
        harbour, boats = media["wp:old.example:301"], media["wp:old.example:302"]
        assert harbour.title == "Harbour at dawn"
        assert harbour.alt_text == "Boats in the harbour at dawn"
        assert harbour.caption == "The harbour at dawn. Photo: J. Roe"  # markup dropped
        assert harbour.description == "Fishing boats return to the old harbour."
        assert harbour.filename == "harbour-scaled.jpg"
        assert (harbour.width, harbour.height) == (2400, 1600)
        assert boats.alt_text == "Fishing boats at the quay"
        assert boats.caption == "Boats at the quay."
        jdoe = await session.scalar(select(User.id).where(User.username == "jdoe"))
        assert harbour.uploader_id == boats.uploader_id == jdoe

        post = await article(session, 201)
        assert post.featured_media_id == harbour.id  # its attachment came before it
        assert (await article(session, 202)).featured_media_id is None

    async def test_body_images_point_at_the_renditions_and_name_the_media_item(
        self, app: FastAPI, session: AsyncSession, uploads: Path
    ) -> None:
        await import_attachments(session, sources_for(app, folder(uploads)))
        media = await media_by_key(session)
        harbour, boats = media["wp:old.example:301"], media["wp:old.example:302"]
        settings = app.state.media.settings
        body = (await article(session, 201)).body

        # harbour-1024x683.jpg: a size of the "-scaled" attachment, found by its URL.
        w1024 = files_url(settings, harbour.sizes["w1024"]["key"])
        assert f'src="{w1024}"' in body
        assert f'data-media-id="{harbour.id}"' in body
        assert f"{files_url(settings, harbour.sizes['w320']['key'])} 320w" in body
        # Its link to the file goes to the full image.
        assert f'href="{files_url(settings, harbour.sizes["full"]["key"])}"' in body
        # wp-image-302, shown 300 wide: the narrowest rendition at least that wide. The
        # attachment comes after the post in the file.
        assert f'src="{files_url(settings, boats.sizes["w320"]["key"])}"' in body
        assert f'data-media-id="{boats.id}"' in body
        assert "old.example" not in body
        # Another site's file of the same name is not ours.
        assert 'src="https://elsewhere.example/wp-content/uploads/2024/05/harbour.jpg"' in body

        rows = await session.execute(select(article_media.c.media_id))
        assert {media_id for (media_id,) in rows} == {harbour.id, boats.id}

    async def test_failures_are_reported_and_the_import_goes_on(
        self, app: FastAPI, session: AsyncSession, uploads: Path
    ) -> None:
        report = await import_attachments(session, sources_for(app, folder(uploads)))
        problems = [str(p) for p in report.problems]
        assert (
            "failed: attachment 303 'Lost photo' (line 66): "
            "its file '2024/05/lost.jpg' is not in the uploads folder"
        ) in problems
        assert (
            "warning: post 202 'Missing picture' (line 54): "
            "its featured image, attachment 303, is not imported"
        ) in problems
        assert any(
            p.startswith("warning: attachment 304 'Annual report'") and "application/pdf" in p
            for p in problems
        )
        assert report.skipped["attachment not an image"] == 1
        assert await session.scalar(select(func.count()).select_from(Media)) == 2

    async def test_metadata_is_stripped_through_the_library(
        self, app: FastAPI, session: AsyncSession, uploads: Path
    ) -> None:
        original = Image.open(uploads / "2024" / "05" / "harbour-scaled.jpg")
        assert original.getexif().get_ifd(GPS_IFD), "the test photo has a location"
        await import_attachments(session, sources_for(app, folder(uploads)))
        harbour = (await media_by_key(session))["wp:old.example:301"]
        for size in harbour.sizes.values():
            data = await app.state.media.storage.read(size["key"])
            assert data is not None
            stored = Image.open(io.BytesIO(data))
            assert not stored.getexif().get_ifd(GPS_IFD), size["key"]
            assert b"PhoneMaker" not in data

    async def test_without_a_file_source_attachments_are_skipped_and_bodies_kept(
        self, app: FastAPI, session: AsyncSession
    ) -> None:
        report = await import_attachments(session, sources_for(app, None))
        assert as_rows(report)["attachments"] == (0, 0, 0, 4, 0)
        assert report.skipped["attachment (no --uploads or --fetch-attachments)"] == 4
        body = (await article(session, 201)).body
        assert "https://old.example/wp-content/uploads/2024/05/harbour-1024x683.jpg" in body
        assert "data-media-id" not in body

    async def test_an_image_without_alt_text_is_not_made_a_published_articles_image(
        self, app: FastAPI, session: AsyncSession, uploads: Path, tmp_path: Path
    ) -> None:
        bare = tmp_path / "bare.xml"
        text = ATTACHMENTS.read_text(encoding="utf-8")
        bare.write_text(text.replace("Boats in the harbour at dawn", ""), encoding="utf-8")
        report = await import_attachments(session, sources_for(app, folder(uploads)), bare)
        harbour = (await media_by_key(session))["wp:old.example:301"]
        post = await article(session, 201)
        assert post.featured_media_id is None  # the articles' rule: published needs alt text
        assert f'data-media-id="{harbour.id}"' not in post.body
        assert files_url(app.state.media.settings, harbour.sizes["w1024"]["key"]) in post.body
        warnings = [p.message for p in report.problems if not p.failed]
        assert any("has no alt text" in w and "featured image" in w for w in warnings)
        assert any(f"media item {harbour.id} in its body has no alt text" in w for w in warnings)

    def test_files_outside_the_uploads_folder_are_refused(self, uploads: Path) -> None:
        item = next(r for r in WxrReader(ATTACHMENTS) if isinstance(r, Item) and r.post_id == 301)
        for sneaky in ("../secret.jpg", "/etc/passwd", "2024/../../secret.jpg"):
            escaping = replace(item, meta={"_wp_attached_file": sneaky})
            with pytest.raises(SourceRefused, match="outside the uploads folder"):
                asyncio.run(folder(uploads).read(escaping))
        (uploads / "2024" / "link.jpg").symlink_to(uploads.parent / "secret.jpg")
        linked = replace(item, meta={"_wp_attached_file": "2024/link.jpg"})
        with pytest.raises(SourceRefused, match="leads outside the uploads folder"):
            asyncio.run(folder(uploads).read(linked))


class TestAttachmentsAgain:
    async def test_a_second_run_updates_the_words_in_place_and_stores_no_file(
        self, app: FastAPI, session: AsyncSession, uploads: Path, tmp_path: Path
    ) -> None:
        sources = sources_for(app, folder(uploads))
        await import_attachments(session, sources)
        before = await media_by_key(session)
        ids = {key: m.id for key, m in before.items()}
        sizes = {key: m.sizes for key, m in before.items()}
        files = stored_files(app)
        body = (await article(session, 201)).body

        changed = tmp_path / "changed.xml"
        text = ATTACHMENTS.read_text(encoding="utf-8")
        changed.write_text(
            text.replace("Boats in the harbour at dawn", "Trawlers in the harbour at sunrise"),
            encoding="utf-8",
        )
        report = await import_attachments(session, sources, changed)
        assert as_rows(report)["attachments"] == (0, 1, 1, 1, 1)
        assert as_rows(report)["articles"] == (0, 0, 2, 0, 0)
        after = await media_by_key(session)
        assert {key: m.id for key, m in after.items()} == ids
        assert {key: m.sizes for key, m in after.items()} == sizes
        assert after["wp:old.example:301"].alt_text == "Trawlers in the harbour at sunrise"
        assert stored_files(app) == files
        assert report.new_files == []
        assert (await article(session, 201)).body == body

    async def test_a_rerun_without_the_files_still_updates_what_was_imported(
        self, app: FastAPI, session: AsyncSession, uploads: Path, tmp_path: Path
    ) -> None:
        await import_attachments(session, sources_for(app, folder(uploads)))
        changed = tmp_path / "changed.xml"
        text = ATTACHMENTS.read_text(encoding="utf-8")
        changed.write_text(text.replace("Fishing boats at the quay", "Moored boats"), "utf-8")
        report = await import_attachments(session, sources_for(app, None), changed)
        assert as_rows(report)["attachments"] == (0, 1, 1, 2, 0)
        assert (await media_by_key(session))["wp:old.example:302"].alt_text == "Moored boats"
        assert (await article(session, 201)).featured_media_id is not None

    async def test_a_failed_import_leaves_no_files_behind(
        self, app: FastAPI, session: AsyncSession, uploads: Path, tmp_path: Path
    ) -> None:
        cut = tmp_path / "cut.xml"
        text = ATTACHMENTS.read_text(encoding="utf-8")
        cut.write_text(text[: text.index("<!-- Its featured image")], encoding="utf-8")
        with pytest.raises(WxrError):
            await import_file(session, cut, zone=KABUL, sources=sources_for(app, folder(uploads)))
        await session.rollback()
        assert stored_files(app) == set()

    def test_import_keys_carry_the_site(self) -> None:
        assert media_import_key("https://www.old.example/", 7) == "wp:old.example:7"
        assert media_import_key("http://old.example/blog", 7) == "wp:old.example/blog:7"
        assert media_import_key(None, 7) == "wp:7"


class UploadsServer(ThreadingHTTPServer):
    """The old site: serves a folder over HTTP on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        handler = partial(QuietHandler, directory=str(root))
        super().__init__(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def old_site(tmp_path: Path, uploads: Path) -> Iterator[tuple[UploadsServer, Path]]:
    """The old site serving `uploads` under /wp-content/uploads, and the export naming it."""
    site = tmp_path / "site"
    (site / "wp-content").mkdir(parents=True)
    (site / "wp-content" / "uploads").symlink_to(uploads)
    server = UploadsServer(site)
    server.thread.start()
    export = tmp_path / "local.xml"
    text = ATTACHMENTS.read_text(encoding="utf-8")
    export.write_text(
        text.replace(OLD_SITE, server.base).replace("http://www.old.example", server.base),
        encoding="utf-8",
    )
    try:
        yield server, export
    finally:
        server.shutdown()
        server.server_close()


async def fetch_and_import(
    app: FastAPI, session: AsyncSession, settings: Settings, export: Path
) -> Report:
    downloader = Downloader(settings)
    try:
        return await import_attachments(session, sources_for(app, downloader), export)
    finally:
        await downloader.aclose()


class TestFetchingAttachments:
    async def test_a_private_address_is_refused_by_the_webhooks_guard(
        self, app: FastAPI, session: AsyncSession, old_site: tuple[UploadsServer, Path]
    ) -> None:
        _, export = old_site
        settings = app.state.media.settings
        assert not settings.webhook_allow_private_targets
        report = await fetch_and_import(app, session, settings, export)
        assert as_rows(report)["attachments"] == (0, 0, 0, 1, 3)
        refusals = [p.message for p in report.problems if p.failed]
        assert len(refusals) == 3
        assert all("127.0.0.1" in r and "private, loopback" in r for r in refusals)
        assert await session.scalar(select(func.count()).select_from(Media)) == 0

    async def test_downloads_when_private_targets_are_allowed(
        self, app: FastAPI, session: AsyncSession, old_site: tuple[UploadsServer, Path]
    ) -> None:
        server, export = old_site
        settings = app.state.media.settings.model_copy(
            update={"webhook_allow_private_targets": True}
        )
        report = await fetch_and_import(app, session, settings, export)
        assert as_rows(report)["attachments"] == (2, 0, 0, 1, 1)
        assert any("lost.jpg answered HTTP 404" in p.message for p in report.problems)
        host = urlsplit(server.base).hostname
        media = await media_by_key(session)
        assert set(media) == {f"wp:{host}:301", f"wp:{host}:302"}
        post = await article(session, 201)
        assert post.featured_media_id == media[f"wp:{host}:301"].id
        assert server.base not in post.body

    async def test_a_file_over_the_size_limit_is_refused(
        self, app: FastAPI, session: AsyncSession, old_site: tuple[UploadsServer, Path]
    ) -> None:
        _, export = old_site
        settings = app.state.media.settings.model_copy(
            update={"webhook_allow_private_targets": True, "media_max_bytes": 1024}
        )
        report = await fetch_and_import(app, session, settings, export)
        assert as_rows(report)["attachments"] == (0, 0, 0, 1, 3)
        assert sum("larger than 1024 bytes" in p.message for p in report.problems) == 2


@pytest.mark.slow
class TestAttachmentsCommand:
    def run(
        self, database_url: str, media_root: Path, *args: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", "import-wxr", *args],
            cwd=ROOT,
            env=cli_env(database_url, MEDIA_ROOT=str(media_root)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    async def test_uploads_are_imported_and_a_dry_run_keeps_no_file(
        self, database_url: str, session: AsyncSession, uploads: Path, tmp_path: Path
    ) -> None:
        media_root = tmp_path / "media"
        dry = self.run(
            database_url, media_root, str(ATTACHMENTS), "--uploads", str(uploads), "--dry-run"
        )
        assert dry.returncode == 0, dry.stderr
        assert summary(dry.stdout)["attachments"] == (2, 0, 0, 1, 1)
        assert not [p for p in media_root.rglob("*") if p.is_file()]
        assert await session.scalar(select(func.count()).select_from(Media)) == 0

        done = self.run(database_url, media_root, str(ATTACHMENTS), "--uploads", str(uploads))
        assert done.returncode == 0, done.stderr
        assert summary(done.stdout)["attachments"] == (2, 0, 0, 1, 1)
        assert "failed: attachment 303 'Lost photo' (line 66)" in done.stderr
        assert "attachment not an image" in done.stdout
        assert await session.scalar(select(func.count()).select_from(Media)) == 2
        assert [p for p in media_root.rglob("*") if p.is_file()]

    async def test_a_missing_uploads_folder_is_a_clear_error(
        self, database_url: str, tmp_path: Path
    ) -> None:
        done = self.run(
            database_url, tmp_path, str(ATTACHMENTS), "--uploads", str(tmp_path / "nope")
        )
        assert done.returncode == 1
        assert "no folder" in done.stderr
