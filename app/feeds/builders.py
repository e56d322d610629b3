"""Feeds and sitemaps as bytes: RSS 2.0 and Atom 1.0 through feedgen, JSON Feed 1.1 through
its schema, sitemaps through ElementTree, so no text is ever pasted into markup."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from feedgen.feed import FeedGenerator

from app.articles.models import Article
from app.core.config import Settings
from app.core.urls import article_url
from app.feeds.schemas import JsonFeed, JsonFeedAuthor, JsonFeedItem
from app.feeds.service import Located, NewsItem, last_change
from app.media import views as media
from app.media.storage import files_url

RSS_TYPE = "application/rss+xml"
ATOM_TYPE = "application/atom+xml"
JSON_FEED_TYPE = "application/feed+json"
XML_TYPE = "application/xml"

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
IMAGE_NS = "http://www.google.com/schemas/sitemap-image/1.1"
# An empty feed's `updated`: fixed, so the feed's bytes (and ETag) stay the same until an
# article appears.
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)
ET.register_namespace("news", NEWS_NS)
ET.register_namespace("image", IMAGE_NS)

# Characters XML 1.0 cannot carry at all (most C0 controls, lone surrogates, U+FFFE/FFFF):
# a stray one pasted into a title would otherwise make the whole feed unreadable.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def w3c(moment: datetime) -> str:
    """W3C Datetime (an RFC 3339 profile) in UTC, to the second: 2024-05-01T09:30:00+00:00."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def entry_id(settings: Settings, article: Article) -> str:
    """A stable RFC 4151 tag: URI. It names the article by id, so a changed slug, title or
    URL template does not make readers see the article again as new."""
    host = urlsplit(settings.site_url).hostname or "localhost"
    return f"tag:{host},{article.created_at.astimezone(UTC):%Y-%m-%d}:articles/{article.id}"


def _url_of(settings: Settings, article: Article) -> str:
    return article_url(settings, article_id=article.id, slug=article.slug, number=article.number)


def _labels(article: Article) -> list[tuple[str, str]]:
    """(slug, name) of the article's categories, then its tags, each name once."""
    named = [(c.slug, c.name) for c in article.categories] + [
        (t.slug, t.name) for t in article.tags
    ]
    seen: set[str] = set()
    labels = []
    for slug, name in named:
        if name.casefold() not in seen:
            seen.add(name.casefold())
            labels.append((slug, name))
    return labels


def _published(article: Article) -> datetime:
    # Feeds list public articles only, and a public article has a publication time.
    assert article.published_at is not None
    return article.published_at


@dataclass(frozen=True, slots=True)
class Picture:
    url: str
    mime_type: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None


def picture(settings: Settings, article: Article) -> Picture | None:
    """The featured image an entry carries: the library's large rendition, else an image
    hosted elsewhere (`featured_image_url`), whose size is unknown."""
    if article.featured_media is not None:
        size = media.large(article.featured_media.sizes)
        return Picture(
            url=files_url(settings, size["key"]),
            mime_type=size["mime_type"],
            bytes=size.get("bytes"),
            width=size["width"],
            height=size["height"],
        )
    if article.featured_image_url:
        return Picture(url=article.featured_image_url)
    return None


def _changed(article: Article) -> datetime:
    return last_change(article.updated_at, article.published_at)


@dataclass(frozen=True, slots=True)
class FeedInfo:
    title: str
    self_url: str
    updated: datetime


def feed_updated(articles: Iterable[Article]) -> datetime | None:
    """The newest change among the items: the feed's `updated` and `Last-Modified`."""
    return max((_changed(a) for a in articles), default=None)


class _AtomEnclosure:
    """An Atom entry's `<link rel="enclosure">`, as a feedgen extension (the methods
    feedgen calls): feedgen's own Atom links lose every attribute but href (feedgen 1.0),
    which would make the image the entry's alternate. Also the (empty) feed-level part."""

    def __init__(self) -> None:
        self.image: Picture | None = None

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_rss(self, element: Any) -> Any:
        return element

    def extend_atom(self, element: Any) -> Any:
        if self.image is not None:
            attributes = {"href": self.image.url, "rel": "enclosure"}
            if self.image.mime_type:
                attributes["type"] = self.image.mime_type
            if self.image.bytes:
                attributes["length"] = str(self.image.bytes)
            element.append(element.makeelement("link", attributes))
        return element


def _generator(settings: Settings, info: FeedInfo, articles: list[Article], media_type: str) -> Any:
    feed = FeedGenerator()
    # dc:creator carries the author's name in RSS, whose own <author> must be an email.
    feed.load_extension("dc", atom=False, rss=True)
    # Media RSS (media:content), which feed readers and aggregators take the picture from.
    feed.load_extension("media", atom=False, rss=True)
    feed.register_extension("picture", _AtomEnclosure, _AtomEnclosure, atom=True, rss=False)
    feed.id(info.self_url)
    feed.title(xml_text(info.title))
    feed.description(xml_text(settings.site_description))
    feed.language(settings.site_language)
    feed.updated(_seconds(info.updated))
    feed.link(href=info.self_url, rel="self", type=media_type)
    # Last: feedgen takes RSS's channel <link> from the last link given.
    feed.link(href=settings.site_url, rel="alternate")
    for article in articles:
        entry = feed.add_entry(order="append")
        entry.guid(entry_id(settings, article), permalink=False)
        entry.title(xml_text(article.title))
        entry.link(href=_url_of(settings, article), rel="alternate")
        entry.published(_seconds(_published(article)))
        entry.updated(_seconds(_changed(article)))
        if article.excerpt:
            # The excerpt is plain text. RSS readers render a description as HTML, so it goes
            # there escaped once; Atom is told its summary is text.
            summary = xml_text(article.excerpt)
            if media_type == RSS_TYPE:
                entry.summary(html.escape(summary, quote=False))
            else:
                entry.summary(summary, type="text")
        if article.body:
            entry.content(xml_text(article.body), type="html")
        name = xml_text(article.author.display_name)
        entry.author(name=name)  # a name alone: feedgen then writes no RSS <author>
        entry.dc.dc_creator(name)
        for slug, label in _labels(article):
            entry.category(term=slug, label=xml_text(label))
        image = picture(settings, article)
        if image is not None:
            _attach(entry, image, media_type)
    return feed


def _attach(entry: Any, image: Picture, media_type: str) -> None:
    """RSS: media:content and an enclosure (whose length RSS requires: 0 when unknown, as
    the RSS Advisory Board advises). Atom: a link rel="enclosure"."""
    if media_type == RSS_TYPE:
        content = {"url": image.url, "medium": "image"}
        if image.mime_type:
            content["type"] = image.mime_type
        for name, value in (("width", image.width), ("height", image.height)):
            if value:
                content[name] = str(value)
        if image.bytes:
            content["fileSize"] = str(image.bytes)
        entry.media.content(content)
    kind = image.mime_type or "image/jpeg"
    if media_type == RSS_TYPE:
        entry.enclosure(url=image.url, length=str(image.bytes or 0), type=kind)
    else:
        entry.picture.image = image


def rss(settings: Settings, info: FeedInfo, articles: list[Article]) -> bytes:
    body: bytes = _generator(settings, info, articles, RSS_TYPE).rss_str(pretty=False)
    return body


def atom(settings: Settings, info: FeedInfo, articles: list[Article]) -> bytes:
    body: bytes = _generator(settings, info, articles, ATOM_TYPE).atom_str(pretty=False)
    return body


def json_feed(settings: Settings, info: FeedInfo, articles: list[Article]) -> bytes:
    feed = JsonFeed(
        title=info.title,
        home_page_url=settings.site_url,
        feed_url=info.self_url,
        description=settings.site_description,
        language=settings.site_language,
        items=[
            JsonFeedItem(
                id=entry_id(settings, article),
                url=_url_of(settings, article),
                title=article.title,
                content_html=article.body,
                summary=article.excerpt or None,
                date_published=_seconds(_published(article)),
                date_modified=_seconds(_changed(article)),
                authors=[JsonFeedAuthor(name=article.author.display_name)],
                tags=[label for _, label in _labels(article)],
                image=image.url if (image := picture(settings, article)) else None,
            )
            for article in articles
        ],
    )
    return feed.model_dump_json(exclude_none=True).encode()


# --- sitemaps --------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = xml_text(text)
    return element


def _document(root: ET.Element) -> bytes:
    body: bytes = ET.tostring(
        root, encoding="utf-8", xml_declaration=True, default_namespace=SITEMAP_NS
    )
    return body


def sitemap_index(locations: list[str]) -> bytes:
    root = ET.Element(f"{{{SITEMAP_NS}}}sitemapindex")
    for location in locations:
        _sub(ET.SubElement(root, f"{{{SITEMAP_NS}}}sitemap"), f"{{{SITEMAP_NS}}}loc", location)
    return _document(root)


def _url(root: ET.Element, settings: Settings, item: Located) -> ET.Element:
    url = ET.SubElement(root, f"{{{SITEMAP_NS}}}url")
    loc = article_url(settings, article_id=item.id, slug=item.slug, number=item.number)
    _sub(url, f"{{{SITEMAP_NS}}}loc", loc)
    _sub(url, f"{{{SITEMAP_NS}}}lastmod", w3c(item.last_change))
    return url


def urlset(settings: Settings, items: list[Located]) -> bytes:
    """Each article's address, and its featured image as a Google image sitemap entry."""
    root = ET.Element(f"{{{SITEMAP_NS}}}urlset")
    for item in items:
        url = _url(root, settings, item)
        if item.image is not None:
            image = ET.SubElement(url, f"{{{IMAGE_NS}}}image")
            _sub(image, f"{{{IMAGE_NS}}}loc", files_url(settings, media.large(item.image)["key"]))
    return _document(root)


_SIMPLIFIED = {"cn", "sg", "hans"}
_TRADITIONAL = {"tw", "hk", "mo", "hant"}


def news_language(tag: str) -> str:
    """`SITE_LANGUAGE` as Google News' schema takes it: an ISO 639 code of two or three
    letters, or `zh-cn` / `zh-tw` for Simplified and Traditional Chinese (`ps-AF` is `ps`,
    `en-GB` is `en`, `zh-Hant-HK` is `zh-tw`)."""
    primary, *rest = tag.strip().lower().replace("_", "-").split("-")
    if primary == "zh":
        if _TRADITIONAL.intersection(rest):
            return "zh-tw"
        if _SIMPLIFIED.intersection(rest):
            return "zh-cn"
    return primary


def news_urlset(settings: Settings, items: list[NewsItem]) -> bytes:
    """A Google News sitemap: each URL with its publication, date and title."""
    root = ET.Element(f"{{{SITEMAP_NS}}}urlset")
    for item in items:
        news = ET.SubElement(_url(root, settings, item), f"{{{NEWS_NS}}}news")
        publication = ET.SubElement(news, f"{{{NEWS_NS}}}publication")
        _sub(publication, f"{{{NEWS_NS}}}name", settings.site_name)
        _sub(publication, f"{{{NEWS_NS}}}language", news_language(settings.site_language))
        _sub(news, f"{{{NEWS_NS}}}publication_date", w3c(item.published_at))
        _sub(news, f"{{{NEWS_NS}}}title", item.title)
    return _document(root)
