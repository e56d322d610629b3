"""Webhooks: admin-only registration, safe targets, events queued with the change that caused
them, and delivery to a real local HTTP receiver: signatures, retries with backoff, 410."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Self

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles import service as articles
from app.articles.models import ArticleStatus
from app.articles.schemas import ArticleCreate
from app.cache import keys
from app.cache.clock import KeyClock
from app.core.config import Settings
from app.core.db import utcnow
from app.core.security import acting_as
from app.mail import service as mail
from app.outbox import worker
from app.outbox.models import Delivery, DeliveryStatus
from app.users.models import Role, User
from app.webhooks import service as webhooks
from app.webhooks import targets
from app.webhooks.models import Webhook
from app.webhooks.sender import signature
from tests.factories import bearer, make_article, make_token, make_user
from tests.support import Inbox, assert_problem, until

API = "/api/v1/webhooks"
ALL_EVENTS = [
    "article.published",
    "article.updated",
    "article.unpublished",
    "article.deleted",
    "comment.approved",
]
LOCAL = {
    "webhook_allow_private_targets": True,
    "webhook_worker": False,
    "webhook_timeout_seconds": 0.5,
}


# --- a real HTTP receiver ----------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server on 127.0.0.1. `script` says how to answer each request in
    turn: a status code, or a number of seconds to stay silent (a timeout); then 200."""

    script: list[int | float] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    server: asyncio.Server | None = None
    answering: int = 0  # requests read and not answered yet
    most_at_once: int = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hooks/newsroom"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            path = head[0].split(" ")[1]
            headers = {}
            for line in head[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(path, headers, body))
            self.answering += 1
            self.most_at_once = max(self.most_at_once, self.answering)
            try:
                await self._answer(reader, writer)
            finally:
                self.answering -= 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        action = self.script.pop(0) if self.script else 200
        if isinstance(action, float):
            await asyncio.sleep(action)
            action = 200
        extra = "Location: http://127.0.0.1:9/elsewhere\r\n" if 300 <= action < 400 else ""
        head_out = f"HTTP/1.1 {action} X\r\n{extra}Content-Length: 0\r\nConnection: close"
        writer.write(f"{head_out}\r\n\r\n".encode())
        await writer.drain()


@dataclass
class Trickler(Receiver):
    """Takes the request, then answers one byte of a header every `every` seconds, for ever:
    never silent for long enough to trip a read timeout, never done."""

    every: float = 0.2
    hung_up: list[float] = field(default_factory=list)  # when the sender gave up on us

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        try:
            while not reader.at_eof():
                await asyncio.sleep(self.every)
                writer.write(b"a")
                await writer.drain()
        finally:
            self.hung_up.append(time.monotonic())


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    made = Receiver()
    await made.start()
    yield made
    await made.stop()


def verify(secret: str, received: Received, *, tolerance: int = 300) -> bool:
    """What a receiver does: recompute the signature, refuse old (replayed) timestamps."""
    timestamp = received.headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256)
    return hmac.compare_digest("v1=" + mac.hexdigest(), received.headers["webhook-signature"])


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture
async def admin_token(session: AsyncSession) -> str:
    return await make_token(session, await make_user(session, role=Role.admin))


@pytest.fixture
async def editor(session: AsyncSession) -> User:
    return await make_user(session, role=Role.editor)


@pytest.fixture
async def editor_token(session: AsyncSession, editor: User) -> str:
    return await make_token(session, editor)


async def register(
    client: httpx.AsyncClient, token: str, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    response = await client.post(
        API, json={"url": url, "events": events or ALL_EVENTS}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored(app: FastAPI) -> list[Delivery]:
    """Every delivery, oldest first, as committed."""
    async with app.state.sessionmaker() as s:
        rows = await s.scalars(select(Delivery).order_by(Delivery.created_at, Delivery.event))
        return list(rows)


async def one(app: FastAPI, delivery_id: uuid.UUID) -> Delivery:
    async with app.state.sessionmaker() as s:
        found = await s.get(Delivery, delivery_id)
        assert found is not None
        return found


async def run_worker(app: FastAPI, now: datetime | None = None, **changes: Any) -> int:
    settings: Settings = app.state.settings
    if changes:
        settings = settings.model_copy(update=changes)
    return await worker.process_due(app.state.sessionmaker, settings, now=now)


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


# --- the active webhooks, remembered ------------------------------------------------------


class TestActiveHooksRemembered:
    """Every approved comment needs the active webhooks: each process reads them once and
    keeps them until a webhook write, here or elsewhere, invalidates them."""

    @pytest.fixture
    def settings_overrides(self, tmp_path: Path) -> dict[str, Any]:
        return {
            **LOCAL,
            "response_cache": True,  # the clock that tells processes apart on SQLite too
            "cache_generation_file": tmp_path / "clock",
            "comment_moderation": "none",
            "comment_flood_seconds": 0,
            "comment_rate_limit": "",
        }

    async def test_read_once_until_a_webhook_changes(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
    ) -> None:
        article = await make_article(session, editor)
        reads: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if "FROM webhooks" in statement and "WHERE webhooks.active" in statement:
                reads.append(statement)

        event.listen(app.state.engine.sync_engine, "before_cursor_execute", seen)
        posted = 0

        async def post() -> None:
            nonlocal posted
            posted += 1
            comment = {"author_name": "R", "author_email": "r@example.com", "content": f"c{posted}"}
            answer = await client.post(f"/api/v1/articles/{article.id}/comments", json=comment)
            assert answer.status_code == 201, answer.text

        async def told() -> int:
            return sum(d.event == "comment.approved" for d in await stored(app))

        try:
            # Read already when the article was published (its event needed them).
            await post()
            await post()
            assert reads == []
            hook = await register(client, admin_token, receiver.url, ["comment.approved"])
            await post()
            assert await told() == 1, "a new webhook hears the next comment"
            changed = await client.patch(
                f"{API}/{hook['id']}", json={"active": False}, headers=bearer(admin_token)
            )
            assert changed.status_code == 200, changed.text
            await post()
            assert await told() == 1, "a disabled webhook hears nothing more"
            # Switched on by another process (another worker, or an instance whose notice
            # arrives through the channel): its invalidation reaches this one's clock.
            await session.execute(update(Webhook).values(active=True))
            await session.commit()
            other = KeyClock(app.state.settings.cache_generation_file)
            try:
                other.invalidate([keys.WEBHOOKS])
            finally:
                other.close()
            await post()
            assert await told() == 2
            assert len(reads) == 3, "read again after each of the three changes only"
        finally:
            event.remove(app.state.engine.sync_engine, "before_cursor_execute", seen)


# --- registration ------------------------------------------------------------------------


class TestRegistration:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return LOCAL

    async def test_crud_shows_the_secret_once(
        self, client: httpx.AsyncClient, admin_token: str, receiver: Receiver
    ) -> None:
        response = await client.post(
            API,
            json={
                "url": receiver.url,
                "events": ["article.published", "article.published", "comment.approved"],
                "description": "Search index",
            },
            headers=bearer(admin_token),
        )
        assert response.status_code == 201, response.text
        created = response.json()
        assert response.headers["location"] == f"{API}/{created['id']}"
        assert created["secret"].startswith("whsec_")
        assert created["events"] == ["article.published", "comment.approved"]
        assert created["active"] is True

        read = await client.get(f"{API}/{created['id']}", headers=bearer(admin_token))
        assert read.status_code == 200
        assert "secret" not in read.json()
        listed = await client.get(API, headers=bearer(admin_token))
        assert listed.json()["total"] == 1
        assert created["secret"] not in listed.text

        patched = await client.patch(
            f"{API}/{created['id']}",
            json={"active": False, "events": ["article.deleted"]},
            headers=bearer(admin_token),
        )
        assert patched.status_code == 200
        assert patched.json()["active"] is False
        assert patched.json()["events"] == ["article.deleted"]
        assert created["secret"] not in patched.text

        deleted = await client.delete(f"{API}/{created['id']}", headers=bearer(admin_token))
        assert deleted.status_code == 204
        gone = await client.get(f"{API}/{created['id']}", headers=bearer(admin_token))
        assert_problem(gone, 404)

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"url": "ftp://example.com/x", "events": ["article.published"]}, "url"),
            ({"url": "http://example.com/x", "events": []}, "events"),
            ({"url": "http://example.com/x", "events": ["article.eaten"]}, "events.0"),
            ({"url": "http://example.com/x", "events": ["article.published"], "x": 1}, "x"),
        ],
    )
    async def test_bad_input_names_the_field(
        self, client: httpx.AsyncClient, admin_token: str, body: dict[str, Any], field: str
    ) -> None:
        response = await client.post(API, json=body, headers=bearer(admin_token))
        assert field in {e["field"] for e in assert_problem(response, 422)["errors"]}

    async def test_only_admins_manage_webhooks(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        editor_token: str,
        admin_token: str,
        receiver: Receiver,
    ) -> None:
        hook = await register(client, admin_token, receiver.url)
        body = {"url": receiver.url, "events": ["article.published"]}
        assert_problem(await client.post(API, json=body), 401)
        assert_problem(await client.post(API, json=body, headers=bearer(editor_token)), 403)
        assert_problem(await client.get(API, headers=bearer(editor_token)), 403)
        for path in (f"{API}/{hook['id']}", f"{API}/{hook['id']}/deliveries"):
            assert_problem(await client.get(path, headers=bearer(editor_token)), 403)
        assert_problem(
            await client.delete(f"{API}/{hook['id']}", headers=bearer(editor_token)), 403
        )
        narrowed = await make_token(
            session, await make_user(session, role=Role.admin), scopes=["webhooks:manage"]
        )
        assert (await client.get(API, headers=bearer(narrowed))).status_code == 200


class TestTargets:
    """WEBHOOK_ALLOW_PRIVATE_TARGETS is off here, as in production."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"webhook_worker": False}

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1/",
            "http://localhost:8080/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://192.168.1.20/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
        ],
    )
    async def test_private_targets_are_refused(
        self, client: httpx.AsyncClient, session: AsyncSession, admin_token: str, url: str
    ) -> None:
        response = await client.post(
            API, json={"url": url, "events": ["article.published"]}, headers=bearer(admin_token)
        )
        body = assert_problem(response, 422)
        assert [e["field"] for e in body["errors"]] == ["url"]
        assert await session.scalar(select(func.count()).select_from(Webhook)) == 0

    async def test_a_changed_url_is_checked_too(
        self,
        client: httpx.AsyncClient,
        admin_token: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        async def public(host: str, port: int) -> list[targets.IPAddress]:
            return [ip_address("93.184.215.14")]

        monkeypatch.setattr(targets, "resolve", public)
        hook = await register(client, admin_token, "https://hooks.example/in")
        monkeypatch.undo()
        response = await client.patch(
            f"{API}/{hook['id']}", json={"url": "http://10.0.0.1/"}, headers=bearer(admin_token)
        )
        assert "url" in {e["field"] for e in assert_problem(response, 422)["errors"]}

    async def test_delivery_checks_the_address_again(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """DNS rebinding: public when registered, private when the delivery goes out."""
        answers = iter([[ip_address("93.184.215.14")], [ip_address("127.0.0.1")]])

        async def rebinding(host: str, port: int) -> list[targets.IPAddress]:
            return next(answers)

        monkeypatch.setattr(targets, "resolve", rebinding)
        await register(client, admin_token, "http://rebind.example/in")
        await make_article(session, editor)
        assert await run_worker(app) == 1
        (delivery,) = await stored(app)
        assert delivery.status == DeliveryStatus.failed
        assert delivery.last_error is not None
        assert "127.0.0.1" in delivery.last_error
        assert delivery.last_status_code is None


class TestPrivateTargetsAllowed:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return LOCAL

    @pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://10.0.0.1/x"])
    async def test_private_targets_are_accepted_with_the_setting(
        self, client: httpx.AsyncClient, admin_token: str, url: str
    ) -> None:
        await register(client, admin_token, url)

    async def test_the_request_goes_to_the_checked_address_naming_the_host(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        port = httpx.URL(receiver.url).port

        async def local(host: str, port: int) -> list[targets.IPAddress]:
            return [ip_address("127.0.0.1")]

        monkeypatch.setattr(targets, "resolve", local)
        await register(client, admin_token, f"http://hooks.example:{port}/in")
        await make_article(session, editor)
        await run_worker(app)
        (received,) = receiver.requests
        assert received.headers["host"] == f"hooks.example:{port}"
        assert received.path == "/in"


# --- delivery ----------------------------------------------------------------------------


class TestDelivery:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return LOCAL

    async def test_failure_then_timeout_then_success_with_backoff(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
    ) -> None:
        receiver.script = [500, 2.0]  # then 200
        hook = await register(client, admin_token, receiver.url, ["article.published"])
        article = await make_article(session, editor, title="Rates rise")
        (queued,) = await stored(app)
        assert queued.status == DeliveryStatus.pending

        start = utcnow()
        assert await run_worker(app, start) == 1
        first = await one(app, queued.id)
        assert (first.status, first.attempts, first.last_status_code) == ("failed", 1, 500)
        assert first.next_attempt_at is not None
        assert 8 <= seconds(first.next_attempt_at - start) <= 12
        assert await run_worker(app, start + timedelta(seconds=5)) == 0, "not due yet"

        assert await run_worker(app, first.next_attempt_at) == 1
        second = await one(app, queued.id)
        assert (second.status, second.attempts, second.last_status_code) == ("failed", 2, None)
        assert second.last_error is not None
        assert "0.5 s" in second.last_error
        assert second.next_attempt_at is not None
        assert 16 <= seconds(second.next_attempt_at - first.next_attempt_at) <= 24

        assert await run_worker(app, second.next_attempt_at) == 1
        third = await one(app, queued.id)
        assert (third.status, third.attempts, third.last_status_code) == ("succeeded", 3, 200)
        assert third.next_attempt_at is None

        assert len(receiver.requests) == 3
        bodies = {r.body for r in receiver.requests}
        assert len(bodies) == 1, "every attempt sends the same bytes"
        for received in receiver.requests:
            assert verify(hook["secret"], received)
            assert received.headers["content-type"] == "application/json"
            assert received.headers["user-agent"] == "Newsroom-Webhooks"
            assert received.headers["webhook-id"] == str(queued.id)
        payload = orjson.loads(receiver.requests[0].body)
        assert payload["id"] == str(queued.id)
        assert payload["event"] == "article.published"
        assert payload["occurred_at"].endswith("Z")
        assert payload["data"] == {
            "id": article.id,
            "number": article.number,
            "slug": article.slug,
            "title": "Rates rise",
            "status": "published",
            "published_at": payload["data"]["published_at"],
            "url": f"http://127.0.0.1:8000/{article.slug}",
        }

        listed = await client.get(f"{API}/{hook['id']}/deliveries", headers=bearer(admin_token))
        (item,) = listed.json()["items"]
        assert item["status"] == "succeeded"
        assert item["attempts"] == 3
        assert item["last_status_code"] == 200

    async def test_log_lines_name_the_webhook_never_its_url(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO)
        # A receiver's path and query are often its secret (chat and CI webhooks).
        hook = await register(
            client, admin_token, f"{receiver.url}/s3cret-path?key=hunter2", ["article.published"]
        )
        await make_article(session, editor)
        assert await run_worker(app) == 1
        (received,) = receiver.requests
        assert "s3cret-path" in received.path
        lines = [record.getMessage() for record in caplog.records]
        assert any(f"webhook {hook['id']}" in line for line in lines), lines
        for line in lines:
            assert "s3cret-path" not in line, line
            assert "hunter2" not in line, line

    async def test_a_forged_or_replayed_request_fails_verification(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
    ) -> None:
        hook = await register(client, admin_token, receiver.url)
        await make_article(session, editor)
        await run_worker(app)
        (good,) = receiver.requests
        assert verify(hook["secret"], good)
        tampered = Received(good.path, good.headers, good.body.replace(b"Article", b"Artikel"))
        assert not verify(hook["secret"], tampered)
        assert not verify("whsec_wrong", good)
        old = str(int(time.time()) - 600)
        replayed = Received(
            good.path,
            {
                **good.headers,
                "webhook-timestamp": old,
                "webhook-signature": signature(hook["secret"], old, good.body),
            },
            good.body,
        )
        assert not verify(hook["secret"], replayed)

    async def test_410_disables_the_webhook(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
    ) -> None:
        receiver.script = [410]
        hook = await register(client, admin_token, receiver.url)
        await make_article(session, editor)
        await run_worker(app)
        (delivery,) = await stored(app)
        assert delivery.status == DeliveryStatus.gave_up
        assert delivery.last_status_code == 410
        read = await client.get(f"{API}/{hook['id']}", headers=bearer(admin_token))
        assert read.json()["active"] is False
        await make_article(session, editor)
        assert len(await stored(app)) == 1, "a disabled webhook gets nothing new"

    async def test_gives_up_after_the_last_attempt(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
    ) -> None:
        receiver.script = [503, 503, 503]
        await register(client, admin_token, receiver.url)
        await make_article(session, editor)
        moment = utcnow()
        for _ in range(2):
            await run_worker(app, moment, webhook_max_attempts=2)
            moment += timedelta(hours=2)
        (delivery,) = await stored(app)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.gave_up, 2)
        assert delivery.next_attempt_at is None
        assert await run_worker(app, moment + timedelta(days=1)) == 0
        assert len(receiver.requests) == 2

    async def test_redirects_are_not_followed(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
    ) -> None:
        receiver.script = [302]
        await register(client, admin_token, receiver.url)
        await make_article(session, editor)
        await run_worker(app)
        (delivery,) = await stored(app)
        assert (delivery.status, delivery.last_status_code) == (DeliveryStatus.failed, 302)
        assert len(receiver.requests) == 1

    async def test_redeliver_sends_the_same_body_again(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
    ) -> None:
        hook = await register(client, admin_token, receiver.url)
        await make_article(session, editor)
        await run_worker(app)
        (delivery,) = await stored(app)
        assert delivery.status == DeliveryStatus.succeeded
        path = f"{API}/{hook['id']}/deliveries/{delivery.id}/redeliver"
        response = await client.post(path, headers=bearer(admin_token))
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
        assert response.json()["attempts"] == 0
        assert await run_worker(app) == 1
        assert (await one(app, delivery.id)).status == DeliveryStatus.succeeded
        first, again = receiver.requests
        assert first.body == again.body
        assert again.headers["webhook-id"] == str(delivery.id)
        missing = f"{API}/{hook['id']}/deliveries/{uuid.uuid4()}/redeliver"
        assert_problem(await client.post(missing, headers=bearer(admin_token)), 404)

    async def test_concurrent_workers_never_send_one_delivery_twice(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
    ) -> None:
        await register(client, admin_token, receiver.url, ["article.published"])
        for _ in range(6):
            await make_article(session, editor)
        counts = await asyncio.gather(*(run_worker(app) for _ in range(3)))
        assert sum(counts) == 6
        ids = [r.headers["webhook-id"] for r in receiver.requests]
        assert len(ids) == len(set(ids)) == 6
        assert {d.status for d in await stored(app)} == {DeliveryStatus.succeeded}


class TestBackgroundWorker:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {**LOCAL, "webhook_worker": True}

    async def test_the_lifespan_worker_delivers_on_its_own(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
    ) -> None:
        await register(client, admin_token, receiver.url)
        await make_article(session, editor)
        for _ in range(100):
            if receiver.requests and (await stored(app))[0].status == "succeeded":
                break
            await asyncio.sleep(0.1)
        assert len(receiver.requests) == 1
        assert (await stored(app))[0].status == DeliveryStatus.succeeded


class TestSlowReceivers:
    """A receiver that answers a byte at a time holds its own slot for WEBHOOK_DEADLINE_SECONDS
    at most: other receivers and email go on meanwhile."""

    DEADLINE = 3.0

    @pytest.fixture
    def settings_overrides(self, inbox: Inbox) -> dict[str, Any]:
        return {
            **LOCAL,
            "webhook_deadline_seconds": self.DEADLINE,
            "smtp_url": f"smtp://127.0.0.1:{inbox.port}",
        }

    @pytest.fixture
    async def trickler(self) -> AsyncIterator[Trickler]:
        async with Trickler() as made:
            yield made

    @pytest.fixture
    async def running(self, app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(
            worker.run(app.state.sessionmaker, app.state.settings, poll_seconds=0.1)
        )
        yield
        await worker.stop(task)

    async def test_a_trickling_receiver_holds_up_neither_others_nor_email(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
        trickler: Trickler,
        inbox: Inbox,
        running: None,
    ) -> None:
        slow_hook = await register(client, admin_token, trickler.url, ["article.published"])
        await register(client, admin_token, receiver.url, ["article.published"])
        await make_article(session, editor, title="First")
        await until(
            lambda: len(trickler.requests) == 1 and len(receiver.requests) == 1, "both are sent"
        )
        started = trickler.requests[0].at
        fast = receiver.requests[0].at - started
        assert fast < self.DEADLINE / 2, f"the fast receiver waited {fast:.2f} s"

        # While the slow one still trickles: another event, and an email.
        mail.enqueue(session, event="test", to="ed@example.com", subject="Hi", text="Hello.")
        await make_article(session, editor, title="Second")
        await until(
            lambda: len(receiver.requests) == 2 and len(inbox.messages) == 1, "the others go on"
        )
        meanwhile = time.monotonic() - started
        slow, queued = [d for d in await stored(app) if d.webhook_id == slow_hook["id"]]
        assert slow.status == DeliveryStatus.sending, "the slow attempt is still running"
        assert queued.status == DeliveryStatus.pending, "one request at a time to a receiver"
        assert meanwhile < self.DEADLINE, f"took {meanwhile:.2f} s"

        async def the_others_are_recorded() -> bool:
            rest = [d for d in await stored(app) if d.webhook_id != slow_hook["id"]]
            return len(rest) == 3 and {d.status for d in rest} == {DeliveryStatus.succeeded}

        await until(the_others_are_recorded, "the others are recorded")

        await until(lambda: trickler.hung_up, "the slow attempt is given up")
        held = trickler.hung_up[0] - started
        assert self.DEADLINE * 0.9 <= held <= self.DEADLINE + 3, f"held {held:.2f} s"
        failed = await one(app, slow.id)
        assert (failed.status, failed.attempts) == (DeliveryStatus.failed, 1)
        assert failed.last_error == f"No complete answer within {self.DEADLINE:g} s."
        assert failed.next_attempt_at is not None
        assert failed.last_attempt_at is not None
        assert 8 <= seconds(failed.next_attempt_at - failed.last_attempt_at) <= 12, "backoff"
        # The receiver's slot is free again: its next delivery goes (and trickles too).
        await until(lambda: len(trickler.requests) == 2, "the next delivery goes")
        assert trickler.requests[1].headers["webhook-id"] == str(queued.id)


class TestConcurrency:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {**LOCAL, "webhook_timeout_seconds": 5.0}

    @pytest.fixture
    async def slow(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> AsyncIterator[Callable[[int], Awaitable[list[Receiver]]]]:
        """Makes receivers that each answer after 1 s, with a webhook each for
        article.published."""
        made: list[Receiver] = []

        async def make(n: int) -> list[Receiver]:
            for _ in range(n):
                made.append(Receiver(script=[1.0]))
                await made[-1].start()
                await register(client, admin_token, made[-1].url, ["article.published"])
            return made

        yield make
        for each in made:
            await each.stop()

    async def test_slow_receivers_are_sent_to_side_by_side(
        self,
        app: FastAPI,
        session: AsyncSession,
        editor: User,
        slow: Callable[[int], Awaitable[list[Receiver]]],
    ) -> None:
        n = 6
        await slow(n)
        await make_article(session, editor)
        started = time.monotonic()
        assert await run_worker(app) == n
        took = time.monotonic() - started
        assert took < n * 0.5, f"{n} receivers of 1 s each took {took:.2f} s"
        assert {d.status for d in await stored(app)} == {DeliveryStatus.succeeded}

    async def test_receivers_at_once_are_bounded(
        self,
        app: FastAPI,
        session: AsyncSession,
        editor: User,
        slow: Callable[[int], Awaitable[list[Receiver]]],
    ) -> None:
        receivers = await slow(4)
        await make_article(session, editor)
        assert await run_worker(app, webhook_concurrency=2) == 4
        arrivals = sorted(each.requests[0].at for each in receivers)
        assert arrivals[2] - arrivals[0] >= 0.9, "the third waited for a free slot"

    async def test_one_receiver_gets_one_request_at_a_time_in_order(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        receiver: Receiver,
    ) -> None:
        receiver.script = [0.3, 0.3, 0.3]
        await register(client, admin_token, receiver.url, ["article.published"])
        for _ in range(3):
            await make_article(session, editor)
        assert await run_worker(app) == 3
        assert receiver.most_at_once == 1
        sent = [r.headers["webhook-id"] for r in receiver.requests]
        assert sent == [str(d.id) for d in await stored(app)]


# --- events ------------------------------------------------------------------------------


async def events_of(app: FastAPI) -> list[tuple[str, dict[str, Any]]]:
    return [(d.event, orjson.loads(d.payload)["data"]) for d in await stored(app)]


class TestArticleEvents:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return LOCAL

    @pytest.fixture
    async def hook(self, client: httpx.AsyncClient, admin_token: str) -> dict[str, Any]:
        return await register(client, admin_token, "http://127.0.0.1:9/unused")

    async def write(
        self, client: httpx.AsyncClient, token: str, method: str, path: str, **body: Any
    ) -> dict[str, Any]:
        response = await client.request(
            method, f"/api/v1/articles{path}", json=body or None, headers=bearer(token)
        )
        assert response.status_code in (200, 201, 204), response.text
        return response.json() if response.content else {}

    async def test_the_life_of_an_article(
        self, app: FastAPI, client: httpx.AsyncClient, editor_token: str, hook: dict[str, Any]
    ) -> None:
        draft = await self.write(client, editor_token, "POST", "", title="Draft", status="draft")
        path = f"/{draft['id']}"
        await self.write(client, editor_token, "PATCH", path, title="Still a draft")
        assert await events_of(app) == [], "drafts are private"

        await self.write(client, editor_token, "PATCH", path, status="published")
        await self.write(client, editor_token, "PATCH", path, title="Headline")
        await self.write(
            client, editor_token, "POST", f"{path}/corrections", kind="correction", text="Fixed."
        )
        await self.write(client, editor_token, "PATCH", path, status="archived")
        await self.write(client, editor_token, "PATCH", path, title="Archived, edited")
        await self.write(client, editor_token, "PATCH", path, status="published")
        await self.write(client, editor_token, "DELETE", path)
        happened = await events_of(app)
        assert [event for event, _ in happened] == [
            "article.published",
            "article.updated",
            "article.updated",
            "article.unpublished",
            "article.published",
            "article.deleted",
        ]
        unpublished = happened[3][1]
        assert unpublished["status"] == "archived"
        assert unpublished["title"] == "Headline"
        assert set(happened[0][1]) == {
            "id",
            "number",
            "slug",
            "title",
            "status",
            "published_at",
            "url",
        }

    async def test_created_published_and_deleting_a_draft(
        self, app: FastAPI, client: httpx.AsyncClient, editor_token: str, hook: dict[str, Any]
    ) -> None:
        live = await self.write(client, editor_token, "POST", "", title="Live", status="published")
        draft = await self.write(client, editor_token, "POST", "", title="Draft", status="draft")
        await self.write(client, editor_token, "DELETE", f"/{draft['id']}")
        happened = await events_of(app)
        assert happened == [("article.published", happened[0][1])]
        assert happened[0][1]["id"] == live["id"]

    async def test_scheduled_articles_are_announced_by_the_write_that_schedules_them(
        self, app: FastAPI, client: httpx.AsyncClient, editor_token: str, hook: dict[str, Any]
    ) -> None:
        later = (utcnow() + timedelta(days=1)).isoformat()
        scheduled = await self.write(
            client, editor_token, "POST", "", title="Soon", status="scheduled", published_at=later
        )
        await self.write(client, editor_token, "PATCH", f"/{scheduled['id']}", title="Soon!")
        live = await self.write(client, editor_token, "POST", "", title="Now", status="published")
        await self.write(client, editor_token, "PATCH", f"/{live['id']}", published_at=later)
        happened = await events_of(app)
        assert [event for event, _ in happened] == [
            "article.published",
            "article.updated",
            "article.published",
            "article.unpublished",
        ]
        announced = happened[0][1]
        assert announced["status"] == "scheduled"
        assert announced["published_at"] == scheduled["published_at"]
        assert happened[3][1]["status"] == "scheduled"

    async def test_only_subscribed_active_webhooks_get_a_delivery(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin_token: str,
        editor_token: str,
    ) -> None:
        wanted = await register(client, admin_token, "http://127.0.0.1:9/a", ["article.deleted"])
        await register(client, admin_token, "http://127.0.0.1:9/b", ["comment.approved"])
        off = await register(client, admin_token, "http://127.0.0.1:9/c", ["article.deleted"])
        await client.patch(
            f"{API}/{off['id']}", json={"active": False}, headers=bearer(admin_token)
        )
        made = await self.write(client, editor_token, "POST", "", title="X", status="published")
        await self.write(client, editor_token, "DELETE", f"/{made['id']}")
        (delivery,) = await stored(app)
        assert (delivery.event, delivery.webhook_id) == ("article.deleted", wanted["id"])


class TestTransactions:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return LOCAL

    async def test_a_change_that_rolls_back_leaves_no_delivery(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
    ) -> None:
        await register(client, admin_token, "http://127.0.0.1:9/unused")
        data = ArticleCreate(title="Never happened", status=ArticleStatus.published)
        await articles.create(session, data, acting_as(editor))
        await webhooks.enqueue(session, "article.updated", {"id": 1})
        await session.flush()
        assert await session.scalar(select(func.count()).select_from(Delivery)) == 2
        await session.rollback()
        assert await stored(app) == []

        await session.refresh(editor)

        await make_article(session, editor, title="Happened")
        assert [d.event for d in await stored(app)] == ["article.published"]


class TestCommentEvents:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {**LOCAL, "comment_flood_seconds": 0, "comment_rate_limit": ""}

    async def test_approval_by_post_moderation_and_bulk_and_never_an_email(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_token: str,
        editor: User,
        editor_token: str,
    ) -> None:
        await register(client, admin_token, "http://127.0.0.1:9/unused", ["comment.approved"])
        article = await make_article(session, editor)
        url = f"/api/v1/articles/{article.id}/comments"
        headers = {"User-Agent": "SecretAgent/1.0"}

        async def post(email: str, **extra: Any) -> dict[str, Any]:
            body = {"author_name": "Reader", "author_email": email, "content": uuid.uuid4().hex}
            response = await client.post(url, json=body | extra, headers=headers)
            assert response.status_code == 201, response.text
            result: dict[str, Any] = response.json()
            return result

        held = await post("first.timer@example.com")  # unknown: held (COMMENT_MODERATION=known)
        assert held["status"] == "pending"
        assert await stored(app) == []
        moderated = await client.patch(
            f"/api/v1/comments/{held['id']}",
            json={"status": "approved"},
            headers=bearer(editor_token),
        )
        assert moderated.status_code == 200
        again = await client.patch(
            f"/api/v1/comments/{held['id']}",
            json={"status": "approved"},
            headers=bearer(editor_token),
        )
        assert again.status_code == 200
        known = await post("first.timer@example.com", parent_id=held["id"])  # now known
        assert known["status"] == "approved"
        others = [await post(f"other{i}@example.com") for i in range(2)]
        bulk = await client.post(
            "/api/v1/comments/bulk",
            json={"ids": [c["id"] for c in others], "action": "approve"},
            headers=bearer(editor_token),
        )
        assert bulk.status_code == 200
        hold = await client.post(
            "/api/v1/comments/bulk",
            json={"ids": [others[0]["id"]], "action": "hold"},
            headers=bearer(editor_token),
        )
        assert hold.status_code == 200

        happened = await events_of(app)
        assert [event for event, _ in happened] == ["comment.approved"] * 4
        assert sorted(data["id"] for _, data in happened) == sorted(
            [held["id"], known["id"], *(c["id"] for c in others)]
        )
        reply = next(data for _, data in happened if data["id"] == known["id"])
        assert reply == {"id": known["id"], "article_id": article.id, "parent_id": held["id"]}
        everything = b" ".join(d.payload.encode() for d in await stored(app)).lower()
        for private in (b"example.com", b"203.0.113.7", b"secretagent", b"@"):
            assert private not in everything
