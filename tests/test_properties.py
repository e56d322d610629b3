"""Properties that must hold for any input (hypothesis)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from itertools import cycle, islice
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from app.categories.models import Category
from app.core.db import utcnow
from app.core.html import (
    ARTICLE_ATTRIBUTES,
    ARTICLE_TAGS,
    render_comment,
    sanitize_article_html,
)
from app.core.text import slugify, unique_slug
from tests.factories import make_article, make_user

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# Every attribute HTML (current or legacy) reads a URL from: a browser, a feed reader or a
# script may follow any of them.
URL_ATTRIBUTES = {
    "action", "background", "cite", "codebase", "data", "dynsrc", "formaction", "href",
    "icon", "longdesc", "lowsrc", "manifest", "ping", "poster", "profile", "src", "srcset",
    "usemap", "xlink:href",
}  # fmt: skip


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]

    handle_startendtag = handle_starttag


def _dangerous(html: str) -> list[str]:
    parser = _Collector()
    parser.feed(html)
    parser.close()
    problems = [f"<{t}>" for t in parser.tags if t in ("script", "iframe", "object", "embed")]
    for name, value in parser.attributes:
        if name.startswith("on"):
            problems.append(name)
        compact = re.sub(r"[\x00-\x20]", "", value).lower()
        if name in URL_ATTRIBUTES and compact.startswith(("javascript:", "vbscript:", "data:")):
            problems.append(f"{name}={value}")
    if re.search(r"<\s*script", html, re.I):
        problems.append("script text")
    return problems


_tags = st.sampled_from(
    [
        "script", "img", "a", "p", "svg", "iframe", "b", "div", "style", "math", "object",
        "SCRIPT", "blockquote", "q", "del", "ins", "video", "button",
    ]
)  # fmt: skip
_attrs = st.sampled_from(
    [
        "onerror", "onclick", "href", "src", "style", "ONLOAD", "xlink:href", "formaction",
        "cite", "CITE", "longdesc", "poster", "srcset", "background",
    ]
)  # fmt: skip
_values = st.sampled_from(
    [
        "javascript:alert(1)",
        " JaVaScRiPt:alert(1)",
        "java\tscript:alert(1)",
        "&#106;avascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://ok.example/",
        "x",
        '"><script>alert(1)</script>',
    ]
)


@st.composite
def hostile_html(draw: st.DrawFn) -> str:
    parts = draw(
        st.lists(
            st.one_of(
                st.text(max_size=30),
                st.builds(
                    lambda t, a, v, close: f"<{t} {a}={v!r}>" + (f"</{t}>" if close else ""),
                    _tags,
                    _attrs,
                    _values,
                    st.booleans(),
                ),
                st.sampled_from(["<", ">", "<!--", "-->", "<![CDATA[", "]]>", "</", "\x00"]),
            ),
            max_size=12,
        )
    )
    return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(hostile_html())
def test_article_sanitiser_never_returns_active_content(raw: str) -> None:
    assert _dangerous(sanitize_article_html(raw)) == []


# A URL's scheme as browsers read it, disguised the ways they forgive.
HOSTILE_URLS = [
    "javascript:alert(1)",
    " JaVaScRiPt:alert(1)",
    "java\tscript:alert(1)",
    "java&#x09;script:alert(1)",
    "jav&#x0A;ascript:alert(1)",
    "&#106;avascript:alert(1)",
    "\x01javascript:alert(1)",
    "javascript&colon;alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html,<script>alert(1)</script>",
    "DATA:text/html;base64,PHNjcmlwdD4=",
]


def test_no_url_attribute_the_allow_list_admits_carries_a_script_url() -> None:
    """Every tag the article sanitiser keeps, with every URL attribute and every attribute it
    allows on that tag, and every disguise of a script URL: none survives."""
    tried = 0
    for tag in sorted(ARTICLE_TAGS):
        for attribute in sorted(URL_ATTRIBUTES | ARTICLE_ATTRIBUTES.get(tag, set())):
            for value in HOSTILE_URLS:
                clean = sanitize_article_html(f'<{tag} {attribute}="{value}">x</{tag}>')
                assert _dangerous(clean) == [], (tag, attribute, value, clean)
                tried += 1
    assert tried > 8000
    kept = sanitize_article_html('<blockquote cite="https://source.example/a">q</blockquote>')
    assert 'cite="https://source.example/a"' in kept, "safe URLs stay"
    relative = sanitize_article_html('<q cite="/archive/2017">q</q>')
    assert 'cite="/archive/2017"' in relative


@settings(max_examples=300, deadline=None)
@given(hostile_html())
def test_comment_rendering_never_returns_active_content(raw: str) -> None:
    assert _dangerous(render_comment(raw)) == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_slugs_are_stable_and_well_formed(title: str) -> None:
    slug = slugify(title)
    assert slug == slugify(title)
    assert SLUG.match(slug)
    assert len(slug) <= 80
    assert slugify(slug) == slug


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=60), st.integers(min_value=2, max_value=15))
async def test_unique_slugs_never_repeat(title: str, copies: int) -> None:
    taken: set[str] = set()

    async def is_taken(candidate: str) -> bool:
        return candidate in taken

    for _ in range(copies):
        slug = await unique_slug(slugify(title), is_taken)
        assert slug not in taken
        assert SLUG.match(slug)
        taken.add(slug)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3)), min_size=1, max_size=8),
    st.integers(3, 12),
)
async def test_cursor_walk_while_articles_are_added(
    client: httpx.AsyncClient, session: AsyncSession, steps: list[tuple[int, int]], start: int
) -> None:
    """Every article present when the walk starts is seen exactly once; articles added
    meanwhile are seen at most once; nothing older is skipped."""
    author = await make_user(session)
    section = Category(name="s", slug=f"s-{utcnow().timestamp():.6f}".replace(".", "-"))
    session.add(section)
    await session.commit()
    existing = {
        (await make_article(session, author, category_id=section.id)).id for _ in range(start)
    }
    seen: list[int] = []
    cursor: str | None = None
    params: dict[str, Any] = {"category": section.slug}
    for per_page, inserts in islice(cycle(steps), 200):
        query = {**params, "per_page": per_page, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/api/v1/articles", params=query)).json()
        seen += [item["id"] for item in body["items"]]
        for _ in range(inserts):
            await make_article(session, author, category_id=section.id, published_at=utcnow())
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert cursor is None, "the walk reached the end"
    assert len(seen) == len(set(seen)), "an article was returned twice"
    assert existing <= set(seen), "an article present from the start was skipped"
