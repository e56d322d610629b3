"""examples/reader/: a plain-JavaScript page served from another origin reads the seed
article and leaves a reply through CORS, in a real browser (Debian's Chromium, driven by
Playwright). The reply waits for moderation, and its email never reaches the page."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.comments.models import Comment, CommentState
from app.demo import load_demo
from tests.support import ROOT, free_port, running_server

pytestmark = pytest.mark.slow

SEED_TITLE = "If Russia has contacts with Taliban"
EMAIL = "reader.private@example.com"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def static_site(directory: Path, port: int) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_reader_page_reads_and_replies_across_origins(
    app: FastAPI, session: AsyncSession, database_url: str, tmp_path: Path
) -> None:
    await load_demo(session)
    await session.commit()
    api_port, page_port = free_port(), free_port()
    page_origin = f"http://127.0.0.1:{page_port}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SECRET_KEY")}
    env.update(
        PORT=str(api_port),
        DATABASE_URL=database_url,
        CORS_ORIGINS=page_origin,
        COMMENT_MODERATION="all",
        RESPONSE_CACHE="false",
        WEBHOOK_WORKER="false",
        LOG_LEVEL="WARNING",
    )
    args = ["-m", "app", "serve", "--no-migrate"]
    seen: list[str] = []
    with (
        running_server(Path(sys.executable), args, env, api_port) as (api, server),
        static_site(ROOT / "examples" / "reader", page_port) as site,
    ):
        assert site == page_origin
        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path="/usr/bin/chromium",
                headless=True,
                args=CHROMIUM_FLAGS,
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{site}/index.html?api={api}")
                # Twenty demo articles, ten to a page: the 2017 seed is on the second.
                await page.get_by_role("link", name="Older stories").click()
                await page.get_by_role("link", name=SEED_TITLE).click()
                await page.locator("#title").filter(has_text=SEED_TITLE).wait_for()
                body = await page.locator("#body").inner_text()
                assert "Patrushev" in body
                assert await page.locator("#kicker").inner_text()
                assert await page.locator("#date").inner_text()
                assert await page.locator("#byline").inner_text() == "By Stars and Stripes"
                assert "Excerpted" in await page.locator("#category").inner_text()
                assert "Taliban" in await page.locator("#tags").inner_text()
                assert "helicopters" in await page.locator("#corrections").inner_text()
                # The demo thread: the desk's answer sits under the question it answers.
                nested = page.locator(".replies .comment").filter(has_text="we will update")
                await nested.wait_for()
                question = page.locator(".comment").filter(has_text="Has Moscow said")
                seen.append(await page.content())

                await question.get_by_role("button", name="Reply").first.click()
                assert "Anna K." in await page.locator("#replying").inner_text()
                await page.get_by_label("Name *").fill("Curious Reader")
                await page.get_by_label("Email *").fill(EMAIL)
                await page.get_by_label("Website").first.fill("https://reader.example")
                await page.get_by_label("Comment *").fill("Thank you for this report.")
                await page.get_by_role("button", name="Post Comment").click()
                result = page.locator("#result")
                # Wait for the answer, whatever it is, so a failure shows what the page said.
                try:
                    await page.wait_for_function(
                        "() => { const t = document.getElementById('result').textContent;"
                        " return t && t !== 'Posting…'; }",
                        timeout=45_000,
                    )
                except PlaywrightTimeout:
                    log = server.output_so_far().decode(errors="replace")[-3000:]
                    raise AssertionError(f"no answer to the reply; server said:\n{log}") from None
                assert await result.inner_text() == "Your comment is awaiting moderation."
                seen.append(await page.content())
                seen.append(await page.locator("body").inner_text())
            finally:
                await browser.close()

    await session.commit()  # end this session's snapshot: read what the server committed
    article_id = await session.scalar(
        select(Article.id).where(Article.title.startswith(SEED_TITLE))
    )
    stored = (
        await session.scalars(
            select(Comment).where(Comment.article_id == article_id, Comment.author_email == EMAIL)
        )
    ).all()
    assert len(stored) == 1
    assert stored[0].status == CommentState.pending
    asked = await session.scalar(
        select(Comment.id).where(Comment.article_id == article_id, Comment.author_name == "Anna K.")
    )
    assert stored[0].parent_id == asked, "the Reply button answers that comment"
    assert stored[0].author_email == EMAIL
    assert stored[0].author_url == "https://reader.example/"
    for text in seen:
        assert EMAIL not in text
