"""HTML sanitising (allow-list, through nh3/ammonia) and plain-text helpers."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import nh3

ARTICLE_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "del", "em",
    "figcaption", "figure", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li",
    "mark", "ol", "p", "pre", "q", "s", "small", "strong", "sub", "sup", "table", "tbody",
    "td", "tfoot", "th", "thead", "time", "tr", "u", "ul",
}  # fmt: skip
ARTICLE_ATTRIBUTES = {
    "a": {"href", "title", "hreflang"},
    "abbr": {"title"},
    "blockquote": {"cite"},
    # data-media-id: the media library's item this image is (its credit goes with it).
    "img": {
        "src",
        "srcset",
        "sizes",
        "alt",
        "title",
        "width",
        "height",
        "loading",
        "data-media-id",
    },
    "q": {"cite"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "time": {"datetime"},
    "ol": {"start", "reversed"},
}
# Text direction and language on any element: Dari and Pashto paragraphs are right-to-left,
# and a quote in another language should say so (screen readers, hyphenation).
GENERIC_ATTRIBUTES = {"dir", "lang"}
_DIRECTIONS = {"ltr", "rtl", "auto"}
_LANGUAGE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_MEDIA_ID = re.compile(r"^[1-9][0-9]{0,9}$")
_MEDIA_REFERENCE = re.compile(r"<img\b[^>]*\bdata-media-id=\"([1-9][0-9]{0,9})\"")
URL_SCHEMES = {"http", "https", "mailto"}
# Ammonia checks the scheme of `href` and `src` only; `cite` (and any URL attribute the
# allow-list comes to admit) is held to the same schemes here.
URL_ATTRIBUTES = {"href", "src", "cite"}
# A scheme as browsers read it: after dropping leading and trailing controls and spaces, and
# every tab and newline anywhere ("java\tscript:" is "javascript:").
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):", re.I)
_URL_NOISE = re.compile(r"[\t\n\r]")


def _allowed_url(element: str, attribute: str, value: str) -> str | None:
    if attribute == "dir":
        return value.lower() if value.lower() in _DIRECTIONS else None
    if attribute == "lang":
        return value if _LANGUAGE.match(value) else None
    if attribute == "data-media-id":
        return value if _MEDIA_ID.match(value) else None
    if attribute == "srcset":
        # As browsers read it: tabs and newlines dropped first, then split into candidates.
        plain = _URL_NOISE.sub("", value)
        candidates = [c.strip().split()[0] for c in plain.split(",") if c.strip()]
        return value if all(_allowed_url(element, "src", c) for c in candidates) else None
    if attribute not in URL_ATTRIBUTES:
        return value
    scheme = _SCHEME.match(_URL_NOISE.sub("", value).strip("".join(map(chr, range(33)))))
    return value if scheme is None or scheme.group(1).lower() in URL_SCHEMES else None


# Built once: reusable cleaners are much cheaper than per-call options.
_article_cleaner = nh3.Cleaner(
    tags=ARTICLE_TAGS,
    attributes={**ARTICLE_ATTRIBUTES, "*": GENERIC_ATTRIBUTES},
    url_schemes=URL_SCHEMES,
    attribute_filter=_allowed_url,
    link_rel="noopener noreferrer",
    clean_content_tags={"script", "style", "iframe", "object", "embed", "template", "noscript"},
    strip_comments=True,
)
_text_cleaner = nh3.Cleaner(
    tags=set(), clean_content_tags={"script", "style", "template", "noscript"}
)
_SPACE = re.compile(r"\s+")
_BLOCK_END = re.compile(r"</(p|h[1-6]|li|blockquote|figcaption|td|th|pre)>|<br\s*/?>", re.I)
WORDS_PER_MINUTE = 230
EXCERPT_WORDS = 55


# --- embeds ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Provider:
    title: str
    # The canonical player address for a URL of this provider, or None.
    player: Callable[[str], str | None]


def _youtube(url: str) -> str | None:
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.").removeprefix("m.")
    found = None
    if host == "youtu.be":
        found = parts.path.strip("/")
    elif host in ("youtube.com", "youtube-nocookie.com"):
        if parts.path == "/watch":
            found = parse_qs(parts.query).get("v", [""])[0]
        elif parts.path.startswith(("/embed/", "/shorts/", "/live/")):
            found = parts.path.split("/")[2]
    if found and re.fullmatch(r"[A-Za-z0-9_-]{11}", found):
        return f"https://www.youtube-nocookie.com/embed/{found}"
    return None


def _vimeo(url: str) -> str | None:
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    found = re.fullmatch(r"/(?:video/)?(\d{1,12})/?", parts.path)
    if host in ("vimeo.com", "player.vimeo.com") and found:
        return f"https://player.vimeo.com/video/{found.group(1)}"
    return None


def _x(url: str) -> str | None:
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.").removeprefix("mobile.")
    found = re.fullmatch(r"/\w{1,15}/status/(\d{1,20})/?", parts.path)
    if host in ("twitter.com", "x.com") and found:
        return f"https://platform.twitter.com/embed/Tweet.html?id={found.group(1)}"
    if host == "platform.twitter.com" and parts.path == "/embed/Tweet.html":
        tweet = parse_qs(parts.query).get("id", [""])[0]
        if re.fullmatch(r"\d{1,20}", tweet):
            return f"https://platform.twitter.com/embed/Tweet.html?id={tweet}"
    return None


def _instagram(url: str) -> str | None:
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    found = re.fullmatch(r"/(p|reel)/([A-Za-z0-9_-]{5,40})(?:/embed)?/?", parts.path)
    if host == "instagram.com" and found:
        return f"https://www.instagram.com/{found.group(1)}/{found.group(2)}/embed"
    return None


def _maps(url: str) -> str | None:
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    query = parts.query
    if not re.fullmatch(r"[A-Za-z0-9=&%.,:;_!*+-]{0,2000}", query):
        return None
    if host == "openstreetmap.org" and parts.path == "/export/embed.html":
        return f"https://www.openstreetmap.org/export/embed.html?{query}"
    if host == "google.com" and parts.path == "/maps/embed":
        return f"https://www.google.com/maps/embed?{query}"
    return None


EMBED_PROVIDERS: dict[str, _Provider] = {
    "youtube": _Provider("YouTube video", _youtube),
    "vimeo": _Provider("Vimeo video", _vimeo),
    "x": _Provider("Post on X", _x),
    "instagram": _Provider("Instagram post", _instagram),
    "maps": _Provider("Map", _maps),
}
# A player may run its own scripts in its own origin, and open links in a new window; it may
# not navigate the page, submit forms in it or read it.
_SANDBOX = "allow-scripts allow-same-origin allow-popups allow-presentation"
_URL = r"https?://[^\s<>\"']{1,2048}"
# Where authors (and WordPress) put an embed: an iframe, a paragraph holding only its URL
# (plain or linked), or a WordPress embed block around it.
_EMBED_SPOTS = re.compile(
    rf"<figure[^>]*\bwp-block-embed\b[^>]*>.*?({_URL}).*?</figure>"
    rf"|<iframe[^>]*?\bsrc=[\"']({_URL})[\"'][^>]*>.*?</iframe>"
    rf"|<p[^>]*>\s*(?:<a[^>]*>\s*)?({_URL})\s*(?:</a>\s*)?</p>"
    rf"|<figure[^>]*\bdata-embed=[\"']\w+[\"'][^>]*>.*?<iframe[^>]*?\bsrc=[\"']({_URL})[\"'].*?</figure>",
    re.I | re.S,
)


def _embed_block(name: str, player: str) -> str:
    provider = EMBED_PROVIDERS[name]
    source = html.escape(player, quote=True)
    return (
        f'<figure class="embed embed-{name}" data-embed="{name}">'
        f'<iframe src="{source}" title="{provider.title}" sandbox="{_SANDBOX}" '
        'referrerpolicy="strict-origin-when-cross-origin" loading="lazy" allowfullscreen '
        'frameborder="0"></iframe></figure>'
    )


def _player_for(url: str, allowed: Collection[str]) -> tuple[str, str] | None:
    for name in allowed:
        provider = EMBED_PROVIDERS.get(name)
        player = provider.player(html.unescape(url)) if provider is not None else None
        if player is not None:
            return name, player
    return None


def sanitize_article_html(raw: str, embeds: Collection[str] = tuple(EMBED_PROVIDERS)) -> str:
    """Keep structure and links; drop scripts, event handlers and `javascript:` URLs. An embed
    of a provider in `embeds` (an iframe, a URL alone in its paragraph, a WordPress embed
    block) is stored as our own block: a sandboxed iframe of the provider's player, built
    from the id alone, so nothing of the author's markup reaches it; other embeds are
    dropped as before (a URL alone in a paragraph stays a paragraph)."""
    blocks: dict[str, str] = {}
    nonce = secrets.token_hex(8)

    def hold(match: re.Match[str]) -> str:
        url = next(group for group in match.groups() if group)
        found = _player_for(url, embeds)
        if found is None:
            return match.group(0)
        marker = f"embed-{nonce}-{len(blocks)}"
        blocks[marker] = _embed_block(*found)
        return f"<p>{marker}</p>"

    held = _EMBED_SPOTS.sub(hold, raw) if embeds else raw
    clean = _article_cleaner.clean(held)
    for marker, block in blocks.items():
        clean = clean.replace(f"<p>{marker}</p>", block)
    return clean


def plain_text(raw: str) -> str:
    """The text a reader reads, whitespace collapsed, entities decoded: characters, not
    markup (`&lt;b&gt;` in the HTML is `<b>` here). Whoever puts it into HTML escapes it."""
    spaced = _BLOCK_END.sub(lambda m: m.group(0) + " ", raw)
    return _SPACE.sub(" ", html.unescape(_text_cleaner.clean(spaced))).strip()


def word_count(text: str) -> int:
    return len(text.split())


def reading_minutes(words: int) -> int:
    return max(1, -(-words // WORDS_PER_MINUTE)) if words else 0


def excerpt_of(text: str, words: int = EXCERPT_WORDS) -> str:
    """The first `words` words, with an ellipsis when cut (WordPress's default excerpt)."""
    parts = text.split()
    return " ".join(parts) if len(parts) <= words else " ".join(parts[:words]) + "…"


COMMENT_TAGS = {"a", "b", "strong", "i", "em", "code", "q", "del", "p", "br"}
_comment_cleaner = nh3.Cleaner(
    tags=COMMENT_TAGS,
    attributes={"a": {"href"}},
    url_schemes={"http", "https"},
    link_rel="nofollow ugc noopener",
    clean_content_tags={"script", "style", "template", "noscript", "iframe", "object"},
    strip_comments=True,
)
# A bare URL not already inside a tag or an attribute.
_BARE_URL = re.compile(r"""(?<![="'>/\w])(https?://[^\s<>"']+[^\s<>"'.,;:!?)\]])""")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n+")
_LINK = re.compile(r"<a\s", re.I)


def render_comment(source: str) -> str:
    """A reader's plain text as safe HTML: paragraphs from blank lines, `<br>` from single
    newlines, bare URLs linked (`rel="nofollow ugc"`), a few inline tags kept, the rest
    escaped or stripped."""
    paragraphs = _PARAGRAPH_BREAK.split(source.replace("\r\n", "\n").strip())
    html_parts = []
    for paragraph in paragraphs:
        linked = _BARE_URL.sub(r'<a href="\1">\1</a>', paragraph.strip())
        html_parts.append("<p>" + linked.replace("\n", "<br>") + "</p>")
    return _comment_cleaner.clean("".join(html_parts))


def count_links(rendered: str) -> int:
    return len(_LINK.findall(rendered))


def media_ids(body: str) -> list[int]:
    """The media library items a sanitised article body shows (`<img data-media-id>`)."""
    return list(dict.fromkeys(int(found) for found in _MEDIA_REFERENCE.findall(body)))
