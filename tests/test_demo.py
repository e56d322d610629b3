"""The demo data `make run` loads: the seed article with every field a reader saw."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.demo import load_demo


async def test_the_seed_article_is_served_with_every_field(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await load_demo(session)
    await session.commit()
    assert await load_demo(session) == "demo data already loaded"

    by_number = await client.get("/api/v1/articles/by-number/5186")
    assert by_number.status_code == 200
    seed = by_number.json()
    assert seed["number"] == 5186
    assert seed["kicker"] == "Hanif Atmar:"
    assert seed["title"] == (
        "If Russia has contacts with Taliban, they should use it to bring them to peace talks"
    )
    # "publish: 24 November 2017, time: 12:53 pm" on the site's (Kabul) clock.
    assert seed["published_at"] == "2017-11-24T08:23:00Z"
    assert seed["category"]["name"] == "Excerpted"
    assert seed["source_name"] == "Stars and Stripes"
    assert "According to Stars and Stripes." in seed["body"]
    assert seed["body"].count("<p>") == 11
    assert seed["excerpt"].startswith("Russia must press the Taliban")
    assert seed["word_count"] > 500
    assert seed["reading_minutes"] >= 3
    assert seed["comment_status"] == "open"
    assert seed["corrections"][0]["kind"] == "update"
    assert {t["slug"] for t in seed["tags"]} >= {"taliban", "russia"}

    by_slug = await client.get(f"/api/v1/articles/by-slug/{seed['slug']}")
    assert by_slug.status_code == 200
    assert by_slug.json() == seed
    assert seed["updated_at"] == "2017-11-24T10:40:00Z"  # the correction's time, not today's
    assert seed["featured_image_url"].startswith("https://")
    listing = (await client.get("/api/v1/articles")).json()
    assert (listing["total"], listing["pages"]) == (20, 2)
    assert all(item["updated_at"] == item["published_at"] for item in listing["items"])
    assert all(item["featured_image_url"] for item in listing["items"])
    # The reply thread is shown whole: no demo name reads as a staff member's (those are held).
    thread = await client.get(f"/api/v1/articles/{seed['id']}/comments", params={"tree": "true"})
    items = thread.json()["items"]
    assert seed["comment_count"] == 3
    assert [len(c["replies"]) for c in items] == [0, 1]
