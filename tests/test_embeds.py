"""Article bodies keep text direction and language, and the embeds the newsroom allows, as
sandboxed iframes built by us from the provider's id."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lxml import html as lxml_html
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.html import sanitize_article_html
from app.users.models import Role
from tests.factories import auth_headers

API = "/api/v1/articles"

CASES = [
    (
        "<p>https://www.youtube.com/watch?v=dQw4w9WgXcQ</p>",
        "youtube",
        "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ",
    ),
    (
        '<p><a href="https://youtu.be/dQw4w9WgXcQ">https://youtu.be/dQw4w9WgXcQ</a></p>',
        "youtube",
        "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ",
    ),
    (
        '<iframe src="https://player.vimeo.com/video/76979871" onload="alert(1)" '
        'srcdoc="<script>alert(1)</script>"></iframe>',
        "vimeo",
        "https://player.vimeo.com/video/76979871",
    ),
    (
        '<figure class="wp-block-embed is-type-rich is-provider-twitter">'
        '<div class="wp-block-embed__wrapper">https://twitter.com/nasa/status/1234567890</div>'
        "</figure>",
        "x",
        "https://platform.twitter.com/embed/Tweet.html?id=1234567890",
    ),
    (
        "<p>https://x.com/nasa/status/1234567890</p>",
        "x",
        "https://platform.twitter.com/embed/Tweet.html?id=1234567890",
    ),
    (
        "<p>https://www.instagram.com/p/CxYz123AbC/</p>",
        "instagram",
        "https://www.instagram.com/p/CxYz123AbC/embed",
    ),
    (
        '<iframe src="https://www.openstreetmap.org/export/embed.html?bbox=69.1,34.5,69.2,34.6'
        '&amp;layer=mapnik"></iframe>',
        "maps",
        "https://www.openstreetmap.org/export/embed.html?bbox=69.1,34.5,69.2,34.6&layer=mapnik",
    ),
]


def iframes(body: str) -> list[Any]:
    return list(lxml_html.fragment_fromstring(body, create_parent="div").iter("iframe"))


@pytest.mark.parametrize(("raw", "provider", "player"), CASES)
def test_an_allowed_embed_becomes_our_sandboxed_iframe(
    raw: str, provider: str, player: str
) -> None:
    body = sanitize_article_html(f"<p>Before.</p>{raw}<p>After.</p>")
    (frame,) = iframes(body)
    assert frame.get("src") == player
    assert frame.get("sandbox") == "allow-scripts allow-same-origin allow-popups allow-presentation"
    assert frame.get("referrerpolicy") == "strict-origin-when-cross-origin"
    assert frame.get("loading") == "lazy"
    assert set(frame.attrib) <= {
        "src", "title", "sandbox", "referrerpolicy", "loading", "allowfullscreen", "frameborder"
    }  # fmt: skip
    assert f'data-embed="{provider}"' in body
    assert "alert" not in body
    assert body.startswith("<p>Before.</p>")
    assert body.endswith("<p>After.</p>")
    # Stored as it is shown: saving the stored body again changes nothing.
    assert sanitize_article_html(body) == body


@pytest.mark.parametrize(
    "raw",
    [
        '<iframe src="https://evil.example/player"></iframe>',
        '<iframe src="javascript:alert(1)"></iframe>',
        '<iframe src="https://www.youtube.com/embed/short"></iframe>',
        '<iframe src="https://www.youtube.com.evil.example/embed/dQw4w9WgXcQ"></iframe>',
        '<iframe src="https://www.google.com/maps/embed?pb=&quot;onload=x"></iframe>',
    ],
)
def test_anything_else_is_dropped(raw: str) -> None:
    body = sanitize_article_html(f"<p>Kept.</p>{raw}")
    assert iframes(body) == []
    assert "evil" not in body
    assert "javascript" not in body


def test_only_the_allowed_providers_are_embedded() -> None:
    raw = "<p>https://vimeo.com/76979871</p><p>https://youtu.be/dQw4w9WgXcQ</p>"
    body = sanitize_article_html(raw, ["youtube"])
    assert [f.get("src") for f in iframes(body)] == [
        "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"
    ]
    assert "<p>https://vimeo.com/76979871</p>" in body  # a link a reader can still follow
    assert iframes(sanitize_article_html(raw, [])) == []


def test_an_unknown_provider_setting_is_refused() -> None:
    with pytest.raises(ValidationError, match="EMBED_PROVIDERS"):
        Settings(embed_providers=["myspace"])
    assert Settings(embed_providers="youtube, maps").embed_providers == ["youtube", "maps"]


def test_direction_and_language_are_kept_and_checked() -> None:
    body = sanitize_article_html(
        '<p dir="rtl" lang="fa-AF">سلام</p><blockquote lang="ps" dir="RTL">ښه</blockquote>'
        '<p dir="sideways" lang="x&quot; onclick=&quot;1">bad</p>'
    )
    assert '<p dir="rtl" lang="fa-AF">سلام</p>' in body
    assert '<blockquote lang="ps" dir="rtl">ښه</blockquote>' in body
    assert "<p>bad</p>" in body


class TestThroughTheApi:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"embed_providers": ["youtube"]}

    async def test_the_setting_decides_what_an_article_keeps(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session, Role.editor)
        body = (
            '<p dir="rtl" lang="fa">خبر</p><p>https://youtu.be/dQw4w9WgXcQ</p>'
            '<iframe src="https://player.vimeo.com/video/76979871"></iframe>'
        )
        made = await client.post(
            API, json={"title": "Embeds", "status": "published", "body": body}, headers=headers
        )
        assert made.status_code == 201, made.text
        stored = made.json()["body"]
        assert [f.get("src") for f in iframes(stored)] == [
            "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"
        ]
        assert '<p dir="rtl" lang="fa">خبر</p>' in stored
        shown = (await client.get(f"{API}/{made.json()['id']}")).json()
        assert shown["body"] == stored
        assert shown["excerpt"] == "خبر"
