"""HTML sanitising (allow-list, through nh3/ammonia) and plain-text helpers."""

from __future__ import annotations

import html
import re

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
    "img": {"src", "alt", "title", "width", "height", "loading"},
    "q": {"cite"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "time": {"datetime"},
    "ol": {"start", "reversed"},
}
URL_SCHEMES = {"http", "https", "mailto"}
# Ammonia checks the scheme of `href` and `src` only; `cite` (and any URL attribute the
# allow-list comes to admit) is held to the same schemes here.
URL_ATTRIBUTES = {"href", "src", "cite"}
# A scheme as browsers read it: after dropping leading and trailing controls and spaces, and
# every tab and newline anywhere ("java\tscript:" is "javascript:").
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):", re.I)
_URL_NOISE = re.compile(r"[\t\n\r]")


def _allowed_url(element: str, attribute: str, value: str) -> str | None:
    if attribute not in URL_ATTRIBUTES:
        return value
    scheme = _SCHEME.match(_URL_NOISE.sub("", value).strip("".join(map(chr, range(33)))))
    return value if scheme is None or scheme.group(1).lower() in URL_SCHEMES else None


# Built once: reusable cleaners are much cheaper than per-call options.
_article_cleaner = nh3.Cleaner(
    tags=ARTICLE_TAGS,
    attributes=ARTICLE_ATTRIBUTES,
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


def sanitize_article_html(raw: str) -> str:
    """Keep structure and links; drop scripts, event handlers and `javascript:` URLs."""
    return _article_cleaner.clean(raw)


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
