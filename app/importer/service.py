"""Write a WordPress export into the newsroom through the domain services.

Everything runs in the caller's transaction; the caller commits (or, for a dry run or a
malformed file, rolls back). Each entry is written in a savepoint of its own, so an entry the
services refuse is rolled back alone, counted as failed and reported with its line, and the
import goes on.

Running the same export again updates what the earlier run wrote instead of adding it twice.
The tables have no import-key column, so entries are matched by what they already have:

- authors: by username (the WordPress login, sanitised to our username rule);
- categories and tags: by slug (the nicename, percent-decoded and transliterated);
- articles: by `number`, which is the WordPress post id. An article holding that number is
  this post when it has the post's slug or title (either may have been edited in WordPress
  since) and no other post of this run was written to it. Otherwise the number belongs to
  another article, and the post goes under a number above both the export's highest post id
  and the highest number in use (the file is read once beforehand to know them), so no later
  post of the export is pushed off its own number. A later run finds such a post by its
  slug (its own, or the one its title gave it) and author, provided the article's number
  is not a post id of the export;
- comments: by (article, created_at, author_email, content source), the article's comments
  having been read once per post. A comment erased on its writer's request is matched by
  (article, created_at) and never restored;
- attachments: by `Media.import_key`, "wp:{site}:{post id}" (`media_import_key`). A second
  run updates the title, alt text, caption and description from the file (an empty value
  there never blanks one the newsroom filled in) and leaves the stored files alone.

Attachments are imported when first needed: by a post's `_thumbnail_id` or an image in its
body (whichever comes first in the file: the checking pass collects every attachment), or
else when their own item is reached. An attachment that cannot be had is reported, and the
posts that show it are imported without it.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import mimetypes
import secrets
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import EmailStr, TypeAdapter, ValidationError
from slugify import slugify as transliterate
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles import service as articles
from app.articles.models import Article, ArticleStatus, CommentStatus
from app.articles.schemas import ArticleCreate
from app.cache import keys
from app.cache.publish import invalidate
from app.categories import service as categories
from app.categories.models import Category
from app.categories.schemas import CategoryCreate, CategoryUpdate
from app.comments import service as comments
from app.comments.models import Comment, CommentState
from app.core.db import dialect_of, utcnow
from app.core.errors import DomainError, NotFound
from app.core.html import EMBED_PROVIDERS, plain_text, render_comment, sanitize_article_html
from app.core.security import Passwords, acting_as
from app.core.text import slugify, unique_slug
from app.importer import attachments, wxr
from app.media import service as media_library
from app.media import views as media_views
from app.media.images import MIME_TYPES
from app.media.models import Media
from app.media.schemas import MediaUpdate
from app.tags import service as tags
from app.tags.models import Tag
from app.tags.schemas import TagCreate, TagUpdate
from app.users import service as users
from app.users.models import Role, User
from app.users.schemas import UserCreate, UserUpdate

KINDS = ("authors", "categories", "tags", "articles", "comments", "pages", "attachments", "other")
STATUSES = {
    "publish": ArticleStatus.published,
    "future": ArticleStatus.scheduled,
    "draft": ArticleStatus.draft,
    "pending": ArticleStatus.draft,
    "private": ArticleStatus.draft,
}
APPROVALS = {
    "1": CommentState.approved,
    "0": CommentState.pending,
    "spam": CommentState.spam,
    "trash": CommentState.trash,
}
LINKBACKS = ("pingback", "trackback")
UNTITLED = "(no title)"  # what WordPress's own screens show for an empty title
# The article fields an export carries; the others (kicker, byline, sources, images,
# corrections) belong to the newsroom and an update leaves them alone. The featured image
# is the export's only when the post names one that could be imported.
ARTICLE_FIELDS = frozenset(
    {"title", "slug", "excerpt", "body", "status", "published_at"}
    | {"category_id", "category_ids", "tags", "comment_status", "featured_media_id"}
)
NO_FILE_SOURCE = "attachment (no --uploads or --fetch-attachments)"
NOT_AN_IMAGE = "attachment not an image"
IMPORT_KEY_MAX = 200
USERNAME_MAX = 64
ARTICLE_SLUG_MAX = 200
COMMENT_NAME_MAX = 100
EMAIL_MAX = 320
URL_MAX = 2048
IP_MAX = 45

_email = TypeAdapter(EmailStr)
T = TypeVar("T")


# --- the report --------------------------------------------------------------------------


@dataclass
class Tally:
    imported: int = 0
    updated: int = 0
    unchanged: int = 0  # found, and already as the file has it
    skipped: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Problem:
    """An entry that failed (and was left out), or a warning about one that went in."""

    failed: bool
    what: str  # e.g. "post 42 'Hello'"
    line: int
    message: str

    def __str__(self) -> str:
        level = "failed" if self.failed else "warning"
        return f"{level}: {self.what} (line {self.line}): {self.message}"


@dataclass
class Report:
    version: str | None = None
    tallies: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    # Why entries were skipped: "page", "attachment", "nav_menu_item", "pingback", ...
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    # Storage keys of the files this run stored: a caller that rolls back discards them.
    new_files: list[str] = field(default_factory=list)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
            for error in exc.errors()
        )
    if isinstance(exc, IntegrityError):
        return "the database refused it (a duplicate or a missing reference)"
    return str(exc)


# --- WordPress values to ours ------------------------------------------------------------


def username_for(login: str) -> str:
    """A WordPress login as a username of ours: letters, digits, `_.-`, 3–64 characters."""
    allowed = r"[^-a-zA-Z0-9_.]+"
    name = transliterate(login, lowercase=False, separator="_", regex_pattern=allowed)
    name = name[:USERNAME_MAX]
    if not name:
        return "wp-" + hashlib.sha256(login.encode()).hexdigest()[:12]
    return name if len(name) >= 3 else f"wp-{name}"


def term_slug(nicename: str, name: str) -> str:
    return slugify(wxr.decode_slug(nicename) or html.unescape(name))


def _article_slug(post_name: str) -> str | None:
    decoded = wxr.decode_slug(post_name)
    return slugify(decoded, ARTICLE_SLUG_MAX) if decoded else None


def _title(raw: str) -> str:
    return " ".join(html.unescape(raw).split()) or UNTITLED


def _web_url(value: str) -> str | None:
    value = value.strip()
    parts = urlsplit(value)
    ok = parts.scheme in ("http", "https") and parts.netloc and len(value) <= URL_MAX
    return value if ok else None


def _ip(value: str) -> str | None:
    try:
        address = str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None
    return address if len(address) <= IP_MAX else None  # a long IPv6 zone id


def media_import_key(site_url: str | None, post_id: int) -> str:
    """`wp:news.example:55` for attachment 55 of https://news.example: with the site, so
    that the exports of two sites imported into one newsroom keep their images apart (the
    scheme and a `www.` are left out, so a site moved to https keeps its keys)."""
    if not site_url:
        return f"wp:{post_id}"
    parts = urlsplit(site_url.strip())
    site = (parts.hostname or "").removeprefix("www.") + parts.path.rstrip("/")
    key = f"wp:{site}:{post_id}"
    if len(key) > IMPORT_KEY_MAX:
        key = f"wp:{hashlib.sha256(site.encode()).hexdigest()[:16]}:{post_id}"
    return key


def _media_fields(item: wxr.Item) -> dict[str, str]:
    """An attachment's title, alt text, caption and description, held to the library's
    limits (raises ValidationError)."""
    title = " ".join(html.unescape(item.title).split())
    checked = MediaUpdate(
        title=title or None,
        alt_text=" ".join(item.meta.get("_wp_attachment_image_alt", "").split()),
        caption=plain_text(item.excerpt),
        description=plain_text(item.content),
    )
    return {k: v for k, v in checked.model_dump(exclude_none=True).items() if isinstance(v, str)}


def _same_post(article: Article, data: ArticleCreate) -> bool:
    return article.title == data.title or (data.slug is not None and article.slug == data.slug)


def _up_to_date(article: Article, changes: dict[str, object]) -> bool:
    """Whether applying `changes` (text fields already pruned) would leave `article` as is."""
    if any(key in changes for key in articles.REVISED_FIELDS):
        return False
    for key, value in changes.items():
        match key:
            case "category_ids":
                current: object = {c.id for c in article.categories} - {article.category_id}
                wanted: object = set(value) if isinstance(value, list) else value
            case "tags":
                current = {tag.slug for tag in article.tags}
                wanted = set(value) if isinstance(value, list) else value
            case "status":
                # What the service would store: a scheduled time that has passed publishes.
                current = articles.public_status(article, utcnow())
                wanted = (
                    ArticleStatus.published
                    if value == ArticleStatus.scheduled
                    and isinstance(published := changes.get("published_at"), datetime)
                    and published <= utcnow()
                    else value
                )
            case _:
                current, wanted = getattr(article, key), value
        if current != wanted:
            return False
    return True


# --- the import --------------------------------------------------------------------------


Progress = Callable[[str, int], None]


async def import_file(
    session: AsyncSession,
    path: Path,
    *,
    zone: ZoneInfo,
    progress: Progress | None = None,
    max_element_bytes: int = wxr.MAX_ELEMENT_BYTES,
    embeds: Collection[str] = tuple(EMBED_PROVIDERS),
    sources: attachments.Sources | None = None,
) -> Report:
    """Import the export at `path` in `session`'s transaction and report what happened.
    `zone` is the site's clock, for dates the export gives only in local time. `progress`
    is called with the pass ("checking", then "importing") and the bytes it has read.
    `max_element_bytes`: WXR_MAX_ELEMENT_BYTES, the most text one element may hold.
    `embeds`: EMBED_PROVIDERS, whose embeds (WordPress' embed blocks among them) are kept.
    `sources`: the media library and where attachments' files come from; without it,
    attachments are skipped and bodies left as they are.

    The file is read twice: first to check it whole and learn its post ids and attachments,
    then to write. Raises wxr.WxrError for a malformed file (before writing anything, unless
    the file changes in between); the caller must then roll back. The files this run stored
    are in the report's `new_files`: a caller that rolls back discards them
    (`Library.discard`); when this raises, they are discarded already."""
    checked = wxr.WxrReader(path, max_element_bytes=max_element_bytes)
    post_ids: set[int] = set()
    found: dict[int, wxr.Item] = {}
    for record in checked:
        if isinstance(record, wxr.Item) and record.post_type == "post":
            post_ids.add(record.post_id)
        elif isinstance(record, wxr.Item) and record.post_type == "attachment" and sources:
            found[record.post_id] = record
        if progress is not None:
            progress("checking", checked.bytes_read)
    importer = _Importer(session, zone, post_ids, embeds)
    if sources is not None:
        importer.attachments_from(sources, found, checked.base_site_url)
    try:
        await importer.open_transaction()
        reader = wxr.WxrReader(path, max_element_bytes=max_element_bytes)
        for record in reader:
            await importer.write(record)
            if progress is not None:
                progress("importing", reader.bytes_read)
        await importer.finish()
    except BaseException:
        if sources is not None:
            await sources.lib.discard(importer.report.new_files)
        raise
    importer.report.version = reader.version
    # Once committed, an import can have changed any page: every cached one goes.
    invalidate(session, keys.ALL)
    return importer.report


@dataclass(frozen=True, slots=True)
class _Shown:
    """A post's body with its images pointed at the library, and its featured image."""

    body: str
    featured_media_id: int | None = None


@dataclass(frozen=True, slots=True)
class _Comment:
    source: wxr.WxrComment
    status: CommentState
    created_at: datetime
    email: str | None


class _Importer:
    def __init__(
        self, session: AsyncSession, zone: ZoneInfo, post_ids: set[int], embeds: Collection[str]
    ) -> None:
        self.session = session
        self.embeds = embeds
        self.zone = zone
        self.post_ids = post_ids  # every post's id in the file
        self.spare_number: int | None = None  # the next for a post whose number is taken
        self.report = Report()
        self.passwords = Passwords(1)  # one hash at a time: no request shares this process
        self.user_ids: dict[str, int] = {}  # WordPress login -> user id
        self.category_ids: dict[str, int] = {}  # our slug -> category id
        # Held so that the session's identity map (weak references) keeps them loaded, and
        # the services' `session.get` of an author or category needs no query per post.
        self.loaded: dict[tuple[type, int], User | Category] = {}
        self.tag_slugs: set[str] = set()  # our slugs known to exist
        # Categories wait for the first item, so parents are written before their children
        # whatever the order in the file.
        self.pending_categories: list[wxr.Term] = []
        self.written: set[int] = set()  # ids of the articles this run wrote
        self.sources: attachments.Sources | None = None
        self.attachments: dict[int, wxr.Item] = {}  # every attachment, by post id
        self.index = attachments.UrlIndex()
        self.site_url: str | None = None
        # What each attachment became, once needed (None: not in the library).
        self.images: dict[int, media_views.MediaRow | None] = {}

    def attachments_from(
        self, sources: attachments.Sources, found: dict[int, wxr.Item], site_url: str | None
    ) -> None:
        self.sources, self.attachments, self.site_url = sources, found, site_url
        self.index = attachments.UrlIndex(
            (urlsplit(site_url).hostname or "").removeprefix("www.") if site_url else ""
        )
        for item in found.values():
            self.index.add(item)

    async def open_transaction(self) -> None:
        """The SQLite driver begins its transaction only at the first write, and a SAVEPOINT
        issued before that becomes the outer transaction, which its RELEASE commits: then a
        rollback could no longer undo the import. A write that changes nothing begins it."""
        if dialect_of(self.session) == "sqlite":
            await self.session.execute(text("UPDATE users SET id = id WHERE 1 = 0"))

    async def write(self, record: wxr.Record) -> None:
        if isinstance(record, wxr.Author):
            await self._isolated(
                "authors", f"author {record.login!r}", record.line, partial(self._author, record)
            )
        elif isinstance(record, wxr.Term) and record.taxonomy == "category":
            self.pending_categories.append(record)
        elif isinstance(record, wxr.Term):
            await self._isolated(
                "tags", f"tag {record.nicename!r}", record.line, partial(self._tag, record)
            )
        else:
            await self._write_pending_categories()
            await self._item(record)

    async def finish(self) -> None:
        await self._write_pending_categories()

    async def _isolated(
        self, kind: str, what: str, line: int, work: Callable[[], Awaitable[T]], entries: int = 1
    ) -> T | None:
        """Run `work` in a savepoint; if the services refuse it, roll back just that, count
        its `entries` as failed and report why."""
        try:
            async with self.session.begin_nested():
                return await work()
        except (DomainError, ValueError, IntegrityError) as exc:
            self.report.tallies[kind].failed += entries
            self.report.problems.append(Problem(True, what, line, _reason(exc)))
            return None

    def _warn(self, what: str, line: int, message: str) -> None:
        self.report.problems.append(Problem(False, what, line, message))

    # --- authors -----------------------------------------------------------------------

    async def _usable_email(self, raw: str, own_id: int | None, what: str, line: int) -> str | None:
        if not raw:
            return None
        try:
            email = _email.validate_python(raw)
        except ValidationError:
            self._warn(what, line, f"the email {raw!r} is not valid; left empty")
            return None
        holder = await self.session.scalar(select(User.id).where(User.email == email))
        if holder is not None and holder != own_id:
            self._warn(what, line, "another user has this email; left empty")
            return None
        return email

    async def _author(self, author: wxr.Author) -> int:
        what = f"author {author.login!r}"
        username = username_for(author.login)
        display_name = " ".join(html.unescape(author.display_name).split()) or None
        user = await users.by_username(self.session, username)
        tally = self.report.tallies["authors"]
        if user is None:
            email = await self._usable_email(author.email, None, what, author.line)
            user = await users.create(
                self.session,
                UserCreate(
                    username=username,
                    # Nobody knows it: the account can log in only after an admin sets one.
                    password=secrets.token_urlsafe(32),
                    role=Role.author,
                    email=email,
                    display_name=display_name,
                ),
                passwords=self.passwords,
            )
            tally.imported += 1
        else:
            changes: dict[str, str] = {}
            if display_name and display_name != user.display_name:
                changes["display_name"] = display_name
            if author.email and author.email.lower() != (user.email or "").lower():
                email = await self._usable_email(author.email, user.id, what, author.line)
                if email is not None:
                    changes["email"] = email
            if changes:
                await users.update(
                    self.session,
                    user,
                    UserUpdate(**changes),
                    actor=user,
                    passwords=self.passwords,
                )
                tally.updated += 1
            else:
                tally.unchanged += 1
        self.user_ids[author.login] = user.id
        return user.id

    async def _author_for(self, item: wxr.Item) -> User:
        """The user a post's `dc:creator` names; one the file did not declare is linked by
        username, or created with the login as its name."""
        if not item.creator:
            raise ValueError("the post has no author (dc:creator)")
        user_id = self.user_ids.get(item.creator)
        if user_id is None:
            found = await users.by_username(self.session, username_for(item.creator))
            if found is not None:
                user_id = found.id
            else:
                user_id = await self._isolated(
                    "authors",
                    f"author {item.creator!r}",
                    item.line,
                    partial(self._author, wxr.Author(item.creator, "", "", item.line)),
                )
            if user_id is None:
                raise ValueError(f"its author {item.creator!r} could not be imported")
            self.user_ids[item.creator] = user_id
        user = await self.session.get(User, user_id)
        assert user is not None
        self.loaded[User, user_id] = user
        return user

    # --- categories and tags -----------------------------------------------------------

    async def _write_pending_categories(self) -> None:
        if not self.pending_categories:
            return
        pending = {term_slug(t.nicename, t.name): t for t in self.pending_categories}
        self.pending_categories = []
        written: set[str] = set()

        async def write(slug: str, trail: frozenset[str]) -> None:
            term = pending[slug]
            parent = term_slug(term.parent, "") if term.parent else None
            if parent in trail:
                self._warn(f"category {term.nicename!r}", term.line, "its parents form a loop")
                parent = None
            elif parent in pending and parent not in written:
                await write(parent, trail | {slug})
            written.add(slug)
            await self._isolated(
                "categories",
                f"category {term.nicename!r}",
                term.line,
                partial(self._category, slug, term, parent),
            )

        for slug in pending:
            if slug not in written:
                await write(slug, frozenset({slug}))

    async def _category(self, slug: str, term: wxr.Term, parent: str | None) -> int:
        name = html.unescape(term.name).strip() or slug
        parent_id: int | None = None
        if parent is not None:
            parent_id = self.category_ids.get(parent) or await self.session.scalar(
                select(Category.id).where(Category.slug == parent)
            )
            if parent_id is None:
                self._warn(
                    f"category {term.nicename!r}",
                    term.line,
                    f"its parent {term.parent!r} is not imported; placed at the top",
                )
        description = html.unescape(term.description).strip() or None
        found = await self.session.scalar(select(Category).where(Category.slug == slug))
        if found is None:
            found = await categories.create(
                self.session,
                CategoryCreate(name=name, slug=slug, description=description, parent_id=parent_id),
            )
            self.report.tallies["categories"].imported += 1
        else:
            changes: dict[str, object] = {"name": name, "parent_id": parent_id}
            if description is not None:
                changes["description"] = description
            changes = {k: v for k, v in changes.items() if getattr(found, k) != v}
            if changes:
                await categories.update(self.session, found, CategoryUpdate.model_validate(changes))
                self.report.tallies["categories"].updated += 1
            else:
                self.report.tallies["categories"].unchanged += 1
        self.category_ids[slug] = found.id
        return found.id

    async def _tag(self, term: wxr.Term) -> str:
        slug = term_slug(term.nicename, term.name)
        name = html.unescape(term.name).strip() or slug
        found = await self.session.scalar(select(Tag).where(Tag.slug == slug))
        if found is None:
            await tags.create(self.session, TagCreate(name=name, slug=slug))
            self.report.tallies["tags"].imported += 1
        else:
            if found.name != name:
                await tags.update(self.session, found, TagUpdate(name=name))
                self.report.tallies["tags"].updated += 1
            else:
                self.report.tallies["tags"].unchanged += 1
        self.tag_slugs.add(slug)
        return slug

    async def _terms_of(self, item: wxr.Item) -> tuple[list[int], list[str]]:
        """The post's category ids (the first is the primary) and tag slugs. A term the file
        did not declare is linked by slug when it exists (and left as it is), and created
        otherwise, as WordPress would have."""
        category_ids: list[int] = []
        tag_slugs: list[str] = []
        for ref in item.terms:
            slug = term_slug(ref.nicename, ref.name)
            term = wxr.Term(ref.taxonomy, ref.nicename, ref.name, "", "", item.line)
            label = f"{'tag' if ref.taxonomy == 'post_tag' else 'category'} {ref.nicename!r}"
            if ref.taxonomy == "category":
                category_id = self.category_ids.get(slug) or await self.session.scalar(
                    select(Category.id).where(Category.slug == slug)
                )
                if category_id is None:
                    category_id = await self._isolated(
                        "categories", label, item.line, partial(self._category, slug, term, None)
                    )
                if category_id is None:
                    raise ValueError(f"its {label} could not be imported")
                self.category_ids[slug] = category_id
                category_ids.append(category_id)
                if (Category, category_id) not in self.loaded:
                    category = await self.session.get(Category, category_id)
                    assert category is not None
                    self.loaded[Category, category_id] = category
            elif ref.taxonomy == "post_tag":
                if slug not in self.tag_slugs:
                    known = await self.session.scalar(select(Tag.id).where(Tag.slug == slug))
                    if known is None and (
                        await self._isolated("tags", label, item.line, partial(self._tag, term))
                        is None
                    ):
                        raise ValueError(f"its {label} could not be imported")
                    self.tag_slugs.add(slug)
                tag_slugs.append(slug)
        return list(dict.fromkeys(category_ids)), list(dict.fromkeys(tag_slugs))

    # --- items -------------------------------------------------------------------------

    async def _item(self, item: wxr.Item) -> None:
        if item.post_type == "attachment" and self.sources is not None:
            await self._image(item.post_id)
            return
        if item.post_type != "post":
            kind = {"page": "pages", "attachment": "attachments"}.get(item.post_type, "other")
            self.report.tallies[kind].skipped += 1
            self.report.skipped[item.post_type] += 1
            return
        if item.status == "trash":
            self.report.tallies["articles"].skipped += 1
            self.report.skipped["trashed post"] += 1
            return
        what = f"post {item.post_id} {_title(item.title)!r}"
        try:
            status = STATUSES.get(item.status)
            if status is None:
                raise ValueError(f"unknown status {item.status!r}")
            if item.password and status != ArticleStatus.draft:
                # Articles have no passwords: published, it would be open to everyone.
                self._warn(what, item.line, "password-protected in WordPress: imported as a draft")
                status = ArticleStatus.draft
            author = await self._author_for(item)
            category_ids, tag_slugs = await self._terms_of(item)
        except ValueError as exc:
            self.report.tallies["articles"].failed += 1
            self.report.problems.append(Problem(True, what, item.line, str(exc)))
            return
        # Before the post's savepoint: a post refused must not take its images with it.
        shown = await self._images_of(item, what, status)
        written = await self._isolated(
            "articles",
            what,
            item.line,
            partial(self._article, item, what, status, author, category_ids, tag_slugs, shown),
        )
        if written is None:
            return
        article_id, is_new = written
        self.written.add(article_id)
        if item.comments:
            valid = self._valid_comments(item, what)
            await self._isolated(
                "comments",
                f"the comments of {what}",
                item.line,
                partial(self._comments, self._levels(valid, what), article_id, is_new),
                entries=len(valid),
            )

    def _article_data(
        self,
        item: wxr.Item,
        status: ArticleStatus,
        category_ids: list[int],
        tag_slugs: list[str],
        shown: _Shown,
    ) -> ArticleCreate:
        # A draft's local date is only when it was last saved; its GMT date is set only
        # when someone chose a publication date.
        local = item.date if status != ArticleStatus.draft else ""
        comment_status = (
            CommentStatus.closed if item.comment_status == "closed" else CommentStatus.open
        )
        published_at = wxr.wp_time(item.date_gmt, local, self.zone)
        if status == ArticleStatus.scheduled and published_at and published_at <= utcnow():
            # WordPress leaves a post "future" when its schedule was missed; its time has
            # come, so it is published, as WordPress would once its cron ran.
            status = ArticleStatus.published
        return ArticleCreate(
            title=_title(item.title),
            slug=_article_slug(item.post_name),
            excerpt=item.excerpt.strip() or None,
            body=shown.body,
            featured_media_id=shown.featured_media_id,
            status=status,
            published_at=published_at,
            category_id=category_ids[0] if category_ids else None,
            category_ids=category_ids[1:],
            tags=tag_slugs,
            comment_status=comment_status,
        )

    async def _article(
        self,
        item: wxr.Item,
        what: str,
        status: ArticleStatus,
        author: User,
        category_ids: list[int],
        tag_slugs: list[str],
        shown: _Shown,
    ) -> tuple[int, bool]:
        data = self._article_data(item, status, category_ids, tag_slugs, shown)
        found, number_taken = await self._match(item, data, author)
        if found is None:
            slug = await self._free_slug(data.slug, None) if data.slug is not None else None
            number = await self._spare_number() if number_taken else item.post_id
            data = data.model_copy(update={"slug": slug, "number": number})
            article = await articles.create(self.session, data, acting_as(author), self.embeds)
            if number_taken:
                self._warn(
                    what,
                    item.line,
                    f"number {item.post_id} belongs to another article; "
                    f"imported as number {article.number}",
                )
            self.report.tallies["articles"].imported += 1
            return article.id, True
        article = await articles.load(self.session, found.id)
        changes = data.model_dump(include=set(ARTICLE_FIELDS))
        if data.featured_media_id is None:
            del changes["featured_media_id"]  # the newsroom's choice, if it made one
        if data.slug is None or data.slug == article.slug:
            del changes["slug"]
        else:
            changes["slug"] = await self._free_slug(data.slug, article.id)
        self._drop_unchanged_text(article, changes, self.embeds)
        if article.author_id != author.id:
            # The export says whose post it is; the services' rule that only editors may
            # reassign an article guards requests, not the import of the site's own data.
            article.author_id = author.id
        elif _up_to_date(article, changes):
            # Untouched, so its version, updated_at (feeds, sitemaps) and ETag stay.
            self.report.tallies["articles"].unchanged += 1
            return article.id, False
        await articles.update(self.session, article, changes, acting_as(author), self.embeds)
        self.report.tallies["articles"].updated += 1
        return article.id, False

    async def _match(
        self, item: wxr.Item, data: ArticleCreate, author: User
    ) -> tuple[Article | None, bool]:
        """The article an earlier run made of this post, if any (see the module's doc), and
        whether the post's number is taken."""
        holder = await self.session.scalar(select(Article).where(Article.number == item.post_id))
        if holder is not None and holder.id not in self.written and _same_post(holder, data):
            return holder, True
        # A post imported under another number: it has the slug it was given then (its own,
        # or the one its title made) and this author, and a number no post of the export has.
        slug = data.slug or slugify(data.title, ARTICLE_SLUG_MAX)
        moved = await self.session.scalar(
            select(Article).where(Article.slug == slug, Article.author_id == author.id)
        )
        if moved is not None and moved.number not in self.post_ids and moved.id not in self.written:
            return moved, holder is not None
        return None, holder is not None

    async def _spare_number(self) -> int:
        """A number no article has and no post of the export will claim."""
        if self.spare_number is None:
            highest = await self.session.scalar(select(func.max(Article.number)))
            self.spare_number = max(highest or 0, max(self.post_ids, default=0)) + 1
        number, self.spare_number = self.spare_number, self.spare_number + 1
        return number

    async def _free_slug(self, wanted: str, own_id: int | None) -> str:
        """`wanted`, or `wanted-2`... when another article has (or had) it."""

        async def taken(candidate: str) -> bool:
            try:
                holder, _ = await articles.id_by_slug(self.session, candidate)
            except NotFound:
                return False
            return holder != own_id

        return await unique_slug(wanted, taken, ARTICLE_SLUG_MAX)

    @staticmethod
    def _drop_unchanged_text(
        article: Article, changes: dict[str, object], embeds: Collection[str]
    ) -> None:
        """Leave out the text fields that would not change, so that running an unchanged
        export again adds no revision."""
        if changes["title"] == article.title:
            del changes["title"]
        body = changes["body"]
        if isinstance(body, str) and sanitize_article_html(body, embeds) == article.body:
            del changes["body"]
        excerpt = changes["excerpt"]
        if (
            not article.excerpt_given
            if excerpt is None
            else article.excerpt_given and plain_text(str(excerpt)) == article.excerpt
        ):
            del changes["excerpt"]

    # --- attachments -------------------------------------------------------------------

    async def _images_of(self, item: wxr.Item, what: str, status: ArticleStatus) -> _Shown:
        """Import what the post shows (its featured image, its body's images) if not done
        yet, and point its body at them. A public or announced article may show only
        images with alt text (the articles' rule): one without is shown from the library's
        files but not linked to it (`data-media-id`), nor made the featured image."""
        body = wxr.wpautop(item.content)
        if self.sources is None:
            return _Shown(body)
        live = status != ArticleStatus.draft

        def linked(row: media_views.MediaRow) -> bool:
            return bool(row.alt_text.strip()) or not live

        featured: int | None = None
        thumbnail = item.meta.get("_thumbnail_id", "").strip()
        if thumbnail.isdigit() and int(thumbnail) > 0:
            row = await self._image(int(thumbnail))
            if row is None:
                missing = (
                    "is not imported"
                    if int(thumbnail) in self.attachments
                    else ("is not in the export")
                )
                self._warn(
                    what, item.line, f"its featured image, attachment {thumbnail}, {missing}"
                )
            elif not linked(row):
                self._warn(
                    what,
                    item.line,
                    f"its featured image, attachment {thumbnail} (media item {row.id}), has no "
                    "alt text, which a published article's images need: left out; add the alt "
                    "text and import again",
                )
            else:
                featured = row.id
        rows: dict[int, media_views.MediaRow] = {}
        for attachment_id in attachments.referenced(body, self.index):
            row = await self._image(attachment_id)
            if row is not None:
                rows[attachment_id] = row
        if rows:
            body, unlinked = attachments.rewrite(
                body, self.index, rows, self.sources.lib.settings, linked=linked
            )
            for media_id in dict.fromkeys(unlinked):
                self._warn(
                    what,
                    item.line,
                    f"media item {media_id} in its body has no alt text: shown from the "
                    "library's files, but not linked to the item (data-media-id) until it has",
                )
        return _Shown(body, featured)

    async def _image(self, post_id: int) -> media_views.MediaRow | None:
        """What attachment `post_id` became in the library (imported, or found and updated,
        once per run), or None if it is not there."""
        if post_id in self.images:
            return self.images[post_id]
        self.images[post_id] = None
        item = self.attachments.get(post_id)
        if item is None or self.sources is None:
            return None
        what = f"attachment {post_id} {_title(item.title)!r}"
        tally = self.report.tallies["attachments"]
        try:
            wanted = _media_fields(item)
        except ValidationError as exc:
            tally.failed += 1
            self.report.problems.append(Problem(True, what, item.line, _reason(exc)))
            return None
        key = media_import_key(self.site_url, post_id)
        existing = await self.session.scalar(select(Media).where(Media.import_key == key))
        if existing is not None:
            media = await self._isolated(
                "attachments", what, item.line, partial(self._update_media, existing, wanted)
            )
        else:
            media = await self._new_media(item, what, key, wanted)
        if media is None:
            return None
        row = media_views.MediaRow(*(getattr(media, c) for c in media_views.SHOWN_COLUMNS))
        self.images[post_id] = row
        return row

    async def _update_media(self, media: Media, wanted: dict[str, str]) -> Media:
        assert self.sources is not None
        changes = {k: v for k, v in wanted.items() if v and v != getattr(media, k)}
        if not changes:
            self.report.tallies["attachments"].unchanged += 1
            return media
        # The file is not read again: a WordPress attachment keeps its file (a new file is
        # a new attachment), and the renditions' addresses in bodies stay as they were.
        await media_library.update(
            self.session, self.sources.lib, media, MediaUpdate.model_validate(changes)
        )
        self.report.tallies["attachments"].updated += 1
        return media

    async def _new_media(
        self, item: wxr.Item, what: str, key: str, wanted: dict[str, str]
    ) -> Media | None:
        assert self.sources is not None
        tally = self.report.tallies["attachments"]
        if self.sources.files is None:
            tally.skipped += 1
            self.report.skipped[NO_FILE_SOURCE] += 1
            return None
        name = PurePosixPath(attachments.relative_path(item)).name
        guessed, _ = mimetypes.guess_type(name)
        if guessed is not None and guessed not in MIME_TYPES:
            # Read by content, were it read; but a PDF or a video need not be fetched to
            # know the library will not take it.
            tally.skipped += 1
            self.report.skipped[NOT_AN_IMAGE] += 1
            self._warn(what, item.line, f"{name} ({guessed}) is not an image the library takes")
            return None
        try:
            data = await self.sources.files.read(item)
        except attachments.SourceRefused as exc:
            tally.failed += 1
            self.report.problems.append(Problem(True, what, item.line, str(exc)))
            return None
        upload = media_library.Upload(
            data=data,
            filename=name or None,
            title=wanted.get("title"),
            alt_text=wanted.get("alt_text"),
            caption=wanted.get("caption"),
            description=wanted.get("description"),
            import_key=key,
        )
        try:
            async with self.session.begin_nested():
                media = await media_library.create(
                    self.session, self.sources.lib, upload, uploader_id=await self._uploader(item)
                )
        except media_library.UnsupportedImage as exc:
            tally.skipped += 1
            self.report.skipped[NOT_AN_IMAGE] += 1
            self._warn(what, item.line, _reason(exc))
            return None
        except (DomainError, ValueError, IntegrityError) as exc:
            tally.failed += 1
            self.report.problems.append(Problem(True, what, item.line, _reason(exc)))
            return None
        self.report.new_files.extend(media_library.file_keys(media))
        tally.imported += 1
        return media

    async def _uploader(self, item: wxr.Item) -> int | None:
        """The attachment's author, if the import knows them (attachments make no users)."""
        if not item.creator:
            return None
        known = self.user_ids.get(item.creator)
        if known is not None:
            return known
        user = await users.by_username(self.session, username_for(item.creator))
        return user.id if user is not None else None

    # --- comments ----------------------------------------------------------------------

    def _valid_comments(self, item: wxr.Item, what: str) -> dict[int, _Comment]:
        tally = self.report.tallies["comments"]
        found: dict[int, _Comment] = {}
        for source in item.comments:
            if source.type not in ("", "comment"):
                # Pingbacks and trackbacks are notices from other sites, not readers' words.
                tally.skipped += 1
                self.report.skipped[source.type] += 1
                continue
            label = f"comment {source.comment_id} on {what}"
            status = APPROVALS.get(source.approved)
            try:
                if status is None:
                    raise ValueError(f"unknown approval {source.approved!r}")
                created_at = wxr.wp_time(source.date_gmt, source.date, self.zone)
                if created_at is None:
                    raise ValueError("it has no date")
            except ValueError as exc:
                tally.failed += 1
                self.report.problems.append(Problem(True, label, source.line, str(exc)))
                continue
            email = source.author_email.strip().lower() or None
            if email is not None and len(email) > EMAIL_MAX:
                email = None
            found[source.comment_id] = _Comment(source, status, created_at, email)
        return found

    def _levels(self, found: dict[int, _Comment], what: str) -> list[list[tuple[_Comment, int]]]:
        """The comments by depth, each with its parent's WordPress id (0: top level).
        Parents may come after their replies in the file; a reply whose parent is missing
        (skipped, failed, or never exported) or that loops back to itself starts a thread."""
        children: dict[int, list[int]] = defaultdict(list)
        for comment_id, comment in found.items():
            parent = comment.source.parent_id
            if parent and (parent not in found or parent == comment_id):
                self._warn(
                    f"comment {comment_id} on {what}",
                    comment.source.line,
                    f"its parent comment {parent} is not imported; shown as a new thread",
                )
                parent = 0
            children[parent].append(comment_id)
        levels: list[list[tuple[_Comment, int]]] = []
        placed: set[int] = set()
        current = [(comment_id, 0) for comment_id in children[0]]
        while len(placed) < len(found):
            if not current:  # only loops are left: break one open
                loose = min(set(found) - placed)
                self._warn(
                    f"comment {loose} on {what}",
                    found[loose].source.line,
                    "its replies loop back to it; shown as a new thread",
                )
                current = [(loose, 0)]
            levels.append([(found[comment_id], parent) for comment_id, parent in current])
            placed.update(comment_id for comment_id, _ in current)
            current = [
                (child, comment_id)
                for comment_id, _ in current
                for child in children.get(comment_id, [])
                if child not in placed
            ]
        return levels

    async def _comments(
        self, levels: list[list[tuple[_Comment, int]]], article_id: int, is_new: bool
    ) -> None:
        """Write a post's comments, parents first, and recount the article's approved ones.
        Counted only once all are written: they go in together or fail together."""
        existing: dict[tuple[datetime, str | None, str], Comment] = {}
        erased: set[datetime] = set()
        if not is_new:
            for old in await self.session.scalars(
                select(Comment).where(Comment.article_id == article_id)
            ):
                if old.anonymised_at is not None:
                    erased.add(old.created_at)
                else:
                    existing[(old.created_at, old.author_email, old.content_source)] = old
        done: Counter[str] = Counter()
        stored: dict[int, Comment] = {}
        for level in levels:
            fresh: list[Comment] = []
            for entry, parent_wp_id in level:
                source = entry.source
                if entry.created_at in erased:
                    done["skipped"] += 1
                    continue
                parent = stored.get(parent_wp_id)
                comment = existing.get((entry.created_at, entry.email, source.content))
                if comment is None:
                    comment = Comment(
                        article_id=article_id,
                        author_email=entry.email,
                        content_source=source.content,
                        created_at=entry.created_at,
                        updated_at=entry.created_at,
                    )
                    self.session.add(comment)
                    fresh.append(comment)
                    done["imported"] += 1
                name = " ".join(html.unescape(source.author).split())
                wanted = {
                    "author_name": name[:COMMENT_NAME_MAX] or comments.ANONYMOUS,
                    "author_url": _web_url(source.author_url),
                    "ip_address": _ip(source.author_ip),
                    "content_html": render_comment(source.content),
                    "status": entry.status,
                    "depth": parent.depth + 1 if parent is not None else 0,
                    "parent_id": parent.id if parent is not None else None,
                    "root_id": parent.root_id if parent is not None else comment.id,
                }
                if comment not in fresh:
                    same = all(getattr(comment, k) == v for k, v in wanted.items())
                    done["unchanged" if same else "updated"] += 1
                for key, value in wanted.items():
                    setattr(comment, key, value)
                stored[source.comment_id] = comment
            await self.session.flush()
            for comment in fresh:
                if comment.parent_id is None:
                    comment.root_id = comment.id
        await self.session.flush()
        await comments.recount(self.session, [article_id])
        tally = self.report.tallies["comments"]
        tally.imported += done["imported"]
        tally.updated += done["updated"]
        tally.unchanged += done["unchanged"]
        if done["skipped"]:
            tally.skipped += done["skipped"]
            self.report.skipped["erased comment"] += done["skipped"]
