"""A streaming reader for WordPress exports (WXR, "WordPress eXtended RSS", 1.0 to 1.2), and
WordPress's own rules for the values in them (dates, slugs, paragraphs).

The file goes through expat (the parser under ElementTree) in fixed-size chunks, and only the
entry being read (one author, term or item with its comments) is ever held, as a small
element tree that is dropped once it has become a record: memory stays flat however large the
export. Expat is driven directly, rather than through `iterparse`, because it knows the line
of every element as it starts, so every error names the line to look at.

One element's text is held whole, so its size is capped (WXR_MAX_ELEMENT_BYTES): expat hands
text over in pieces as it comes, and the reader stops at the first piece past the limit. A
tag, comment or processing instruction is one piece that expat holds until its end, so the
same number of bytes passing without any of them ending stops the reader too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat
from zoneinfo import ZoneInfo

CHUNK_BYTES = 1 << 16
# No article body is this large; a larger element is a broken or hostile file.
MAX_ELEMENT_BYTES = 16 << 20
VERSIONS = ("1.0", "1.1", "1.2")

# Prefixes differ between files, namespace URIs between WXR versions: match the URIs.
_NAMESPACES = (
    (re.compile(r"^https?://wordpress\.org/export/\d+\.\d+/excerpt/$"), "excerpt"),
    (re.compile(r"^https?://wordpress\.org/export/\d+\.\d+/$"), "wp"),
    (re.compile(r"^http://purl\.org/rss/1\.0/modules/content/$"), "content"),
    (re.compile(r"^http://purl\.org/dc/elements/1\.1/$"), "dc"),
)
# The children of <channel> that become records; everything else there is skipped unread.
_ENTRIES = frozenset(
    {"item", "wp:author", "wp:category", "wp:tag", "wp:wxr_version", "wp:base_site_url"}
)


class WxrError(Exception):
    """The file is not a readable WordPress export; nothing of it should be kept."""

    def __init__(self, message: str, line: int, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Author:
    login: str
    email: str
    display_name: str
    line: int


@dataclass(frozen=True, slots=True)
class Term:
    """A category (`wp:category`) or tag (`wp:tag`) as declared at the top of the file."""

    taxonomy: str  # "category" or "post_tag"
    nicename: str  # WordPress's slug, percent-encoded when not ASCII
    name: str
    parent: str  # the parent's nicename; categories only
    description: str
    line: int


@dataclass(frozen=True, slots=True)
class TermRef:
    """An item's `<category domain=".." nicename="..">Name</category>`."""

    taxonomy: str
    nicename: str
    name: str


@dataclass(frozen=True, slots=True)
class WxrComment:
    comment_id: int
    parent_id: int  # 0: top level
    author: str
    author_email: str
    author_url: str
    author_ip: str
    date: str  # on the site's clock
    date_gmt: str
    content: str
    approved: str  # "1", "0", "spam", "trash"
    type: str  # "" or "comment"; "pingback", "trackback"
    line: int


@dataclass(frozen=True, slots=True)
class Item:
    """An `<item>`: a post, page, attachment, menu item or any other post type."""

    post_id: int
    post_type: str
    title: str
    post_name: str  # the slug, percent-encoded when not ASCII; empty for many drafts
    content: str
    excerpt: str
    status: str
    date: str  # on the site's clock
    date_gmt: str
    creator: str  # the author's login
    comment_status: str
    password: str  # set on a password-protected post
    terms: tuple[TermRef, ...]
    comments: tuple[WxrComment, ...]
    line: int
    # The post's custom fields (`wp:postmeta`), the first value of each key: for example
    # `_thumbnail_id` (a post's featured image), and an attachment's `_wp_attached_file`
    # (its path under wp-content/uploads) and `_wp_attachment_image_alt`.
    meta: dict[str, str] = field(default_factory=dict)
    attachment_url: str = ""  # an attachment's file, on the old site


Record = Author | Term | Item


class WxrReader:
    """Iterate over a WXR file's records, in file order: `for record in WxrReader(path)`.

    Raises WxrError (with the line) for broken XML, a file that is not a WordPress export,
    and an entry missing an element every export has. Values are left as WordPress wrote
    them; the helpers below interpret them."""

    def __init__(self, path: Path, *, max_element_bytes: int = MAX_ELEMENT_BYTES) -> None:
        self.path = path
        self.max_element_bytes = max_element_bytes
        self.version: str | None = None
        self.base_site_url: str | None = None  # the site's address, once read
        self.bytes_read = 0
        self._parser = expat.ParserCreate(namespace_separator=" ")
        self._parser.buffer_text = True
        self._parser.buffer_size = CHUNK_BYTES
        self._parser.StartElementHandler = self._start
        self._parser.EndElementHandler = self._end
        self._parser.CharacterDataHandler = self._data
        # A WXR file has no DTD; refusing entity declarations rules out entity expansion.
        self._parser.EntityDeclHandler = self._entity_declared
        self._names: dict[str, str] = {}
        self._depth = 0
        self._in_channel = False
        self._builder: TreeBuilder | None = None
        self._entry_line = 0
        self._comment_lines: dict[Element, int] = {}
        self._entry_title: str | None = None
        self._ready: list[Record] = []
        # The element whose text is being read, since its start or its last child's end.
        self._element = ""
        self._element_line = 0
        self._text_bytes = 0
        self._events = 0  # callbacks so far: unchanged over a chunk, expat holds a token

    def __iter__(self) -> Iterator[Record]:
        with self.path.open("rb") as stream:
            quiet_bytes = 0
            while True:
                chunk = stream.read(CHUNK_BYTES)
                events = self._events
                self._feed(chunk, final=not chunk)
                self.bytes_read += len(chunk)
                quiet_bytes = quiet_bytes + len(chunk) if events == self._events else 0
                # Text may wait in expat's buffer (a chunk's worth) before it is handed over.
                if quiet_bytes > self.max_element_bytes + 2 * CHUNK_BYTES:
                    raise WxrError(
                        f"a tag, comment or processing instruction runs on for more than "
                        f"{self.max_element_bytes} bytes (WXR_MAX_ELEMENT_BYTES)",
                        self._parser.CurrentLineNumber,
                    )
                ready, self._ready = self._ready, []
                yield from ready
                if not chunk:
                    break
        if self.version is None:
            raise WxrError(
                "no <wp:wxr_version>: this is not a WordPress export",
                self._parser.CurrentLineNumber,
            )

    def _feed(self, chunk: bytes, *, final: bool) -> None:
        try:
            self._parser.Parse(chunk, final)
        except expat.ExpatError as exc:
            raise WxrError(
                f"the XML is malformed ({expat.ErrorString(exc.code)})", exc.lineno, exc.offset + 1
            ) from None

    # --- expat callbacks ----------------------------------------------------------------

    def _name(self, raw: str) -> str:
        """`wp:post_type` for "http://wordpress.org/export/1.2/ post_type"."""
        name = self._names.get(raw)
        if name is None:
            uri, _, local = raw.rpartition(" ")
            name = local
            if uri:
                prefix = next((p for pattern, p in _NAMESPACES if pattern.match(uri)), None)
                name = f"{prefix}:{local}" if prefix else f"{{{uri}}}{local}"
            self._names[raw] = name
        return name

    def _start(self, raw: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        self._events += 1
        name = self._name(raw)
        line = self._parser.CurrentLineNumber
        self._element, self._element_line, self._text_bytes = name, line, 0
        if self._depth == 1 and name != "rss":
            raise WxrError(f"the document is <{name}>, not a WordPress export (<rss>)", line)
        if self._depth == 2:
            self._in_channel = name == "channel"
        elif self._depth == 3 and self._in_channel and name in _ENTRIES:
            self._builder = TreeBuilder()
            self._entry_line = line
            self._comment_lines = {}
            self._entry_title = None
        if self._builder is not None:
            attrs = {self._name(key): value for key, value in attributes.items()}
            element = self._builder.start(name, attrs)
            if self._depth == 4 and name == "wp:comment":
                self._comment_lines[element] = line

    def _data(self, text: str) -> None:
        self._events += 1
        if self._builder is None:
            return  # outside the entries nothing is kept
        self._text_bytes += len(text) if text.isascii() else len(text.encode())
        if self._text_bytes > self.max_element_bytes:
            of = f"the item {self._entry_title!r}" if self._entry_title else "the entry"
            raise WxrError(
                f"<{self._element}> of {of} (line {self._entry_line}) holds more than "
                f"{self.max_element_bytes} bytes of text (WXR_MAX_ELEMENT_BYTES)",
                self._element_line,
            )
        self._builder.data(text)

    def _end(self, raw: str) -> None:
        self._events += 1
        self._text_bytes = 0
        if self._builder is not None:
            element = self._builder.end(self._name(raw))
            if self._depth == 4 and element.tag == "title":
                self._entry_title = element.text
            if self._depth == 3:
                entry = self._builder.close()
                self._builder = None
                record = self._record(entry)
                if record is not None:
                    self._ready.append(record)
        self._depth -= 1

    def _entity_declared(self, name: str, *_: object) -> None:
        raise WxrError(
            f"entity declarations (here {name!r}) are not allowed in a WordPress export",
            self._parser.CurrentLineNumber,
        )

    # --- entries to records -------------------------------------------------------------

    def _record(self, entry: Element) -> Record | None:
        line = self._entry_line
        if entry.tag == "wp:base_site_url":
            self.base_site_url = (entry.text or "").strip() or None
            return None
        if entry.tag == "wp:wxr_version":
            version = (entry.text or "").strip()
            if version not in VERSIONS:
                raise WxrError(
                    f"WXR version {version!r} is not supported (only {', '.join(VERSIONS)})",
                    line,
                )
            self.version = version
            return None
        if self.version is None:
            raise WxrError(
                f"<{entry.tag}> before <wp:wxr_version>: this is not a WordPress export", line
            )
        fields = _fields(entry)
        if entry.tag == "wp:author":
            return Author(
                login=_required(fields, "wp:author_login", entry.tag, line),
                email=fields.get("wp:author_email", "").strip(),
                display_name=fields.get("wp:author_display_name", ""),
                line=line,
            )
        if entry.tag == "wp:category":
            return Term(
                taxonomy="category",
                nicename=_required(fields, "wp:category_nicename", entry.tag, line),
                name=fields.get("wp:cat_name", ""),
                parent=fields.get("wp:category_parent", "").strip(),
                description=fields.get("wp:category_description", ""),
                line=line,
            )
        if entry.tag == "wp:tag":
            return Term(
                taxonomy="post_tag",
                nicename=_required(fields, "wp:tag_slug", entry.tag, line),
                name=fields.get("wp:tag_name", ""),
                parent="",
                description=fields.get("wp:tag_description", ""),
                line=line,
            )
        return self._item(entry, fields, line)

    def _item(self, entry: Element, fields: dict[str, str], line: int) -> Item:
        terms = tuple(
            TermRef(
                taxonomy=child.get("domain", ""),
                nicename=child.get("nicename", ""),
                name=child.text or "",
            )
            for child in entry
            if child.tag == "category"
        )
        comments = tuple(
            self._comment(child, self._comment_lines.get(child, line))
            for child in entry
            if child.tag == "wp:comment"
        )
        meta: dict[str, str] = {}
        for child in entry:
            if child.tag == "wp:postmeta":
                pair = _fields(child)
                key = pair.get("wp:meta_key", "").strip()
                if key:
                    meta.setdefault(key, pair.get("wp:meta_value", ""))
        return Item(
            post_id=_number(fields, "wp:post_id", "item", line),
            post_type=_required(fields, "wp:post_type", "item", line),
            title=fields.get("title", ""),
            post_name=fields.get("wp:post_name", "").strip(),
            content=fields.get("content:encoded", ""),
            excerpt=fields.get("excerpt:encoded", ""),
            status=_required(fields, "wp:status", "item", line),
            date=fields.get("wp:post_date", ""),
            date_gmt=fields.get("wp:post_date_gmt", ""),
            creator=fields.get("dc:creator", "").strip(),
            comment_status=fields.get("wp:comment_status", "").strip(),
            password=fields.get("wp:post_password", ""),
            terms=terms,
            comments=comments,
            line=line,
            meta=meta,
            attachment_url=fields.get("wp:attachment_url", "").strip(),
        )

    def _comment(self, element: Element, line: int) -> WxrComment:
        fields = _fields(element)
        parent = fields.get("wp:comment_parent", "").strip()
        return WxrComment(
            comment_id=_number(fields, "wp:comment_id", "wp:comment", line),
            parent_id=_number(fields, "wp:comment_parent", "wp:comment", line) if parent else 0,
            author=fields.get("wp:comment_author", ""),
            author_email=fields.get("wp:comment_author_email", ""),
            author_url=fields.get("wp:comment_author_url", ""),
            author_ip=fields.get("wp:comment_author_IP", ""),
            date=fields.get("wp:comment_date", ""),
            date_gmt=fields.get("wp:comment_date_gmt", ""),
            content=fields.get("wp:comment_content", ""),
            approved=fields.get("wp:comment_approved", "").strip(),
            type=fields.get("wp:comment_type", "").strip(),
            line=line,
        )


def _fields(entry: Element) -> dict[str, str]:
    """The text of each direct child, by name (the first one of a name)."""
    found: dict[str, str] = {}
    for child in entry:
        found.setdefault(child.tag, child.text or "")
    return found


def _required(fields: dict[str, str], name: str, entry: str, line: int) -> str:
    value = fields.get(name, "").strip()
    if not value:
        raise WxrError(f"<{entry}> without <{name}>", line)
    return value


def _number(fields: dict[str, str], name: str, entry: str, line: int) -> int:
    value = _required(fields, name, entry, line)
    try:
        return int(value)
    except ValueError:
        raise WxrError(f"<{name}> of <{entry}> is not a number: {value!r}", line) from None


# --- WordPress's values ------------------------------------------------------------------

UNSET_DATE = "0000-00-00 00:00:00"


def _naive(value: str) -> datetime | None:
    value = value.strip()
    if not value or value == UNSET_DATE:
        return None
    return datetime.fromisoformat(value)  # "2017-11-24 08:23:00"; ValueError otherwise


def wp_time(gmt: str, local: str, zone: ZoneInfo) -> datetime | None:
    """An instant from WordPress's pair of columns: the GMT one when set, else the local one
    on the site's clock (pass "" to refuse that fallback); None when neither is set.
    Raises ValueError for text that is not a date."""
    moment = _naive(gmt)
    if moment is not None:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    moment = _naive(local)
    if moment is not None:
        return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
    return None


def decode_slug(nicename: str) -> str:
    """WordPress stores a non-ASCII slug as percent-encoded UTF-8 ("%d0%bc%d0%b8%d1%80")."""
    return unquote(nicename.strip(), errors="replace")


_BLOCK_TAG = re.compile(
    r"<(?:p|div|h[1-6]|ul|ol|li|dl|blockquote|pre|table|figure|hr|section|article|aside|"
    r"header|footer|nav|address|details|form|fieldset)\b",
    re.IGNORECASE,
)
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")


def wpautop(content: str) -> str:
    """WordPress's classic editor saves paragraphs as blank lines and adds the `<p>`s only
    when showing a post. Content without block tags gets them here: each blank-line-separated
    block becomes a paragraph, and a single newline within one a `<br>`, as WordPress does.
    Content that has block tags (the block editor's) is left as it is."""
    text = content.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text or _BLOCK_TAG.search(text):
        return text
    paragraphs = []
    for block in _BLANK_LINES.split(text):
        if block.strip():
            paragraphs.append("<p>" + block.strip().replace("\n", "<br>\n") + "</p>")
    return "\n".join(paragraphs)
