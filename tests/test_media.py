"""The media library over HTTP: uploads and their renditions, metadata stripped and read,
refusals, focal crops, who sees and changes what, deletion rules, webhooks, and S3 end to end.

Files are fetched back through the app (`/media/...`, MEDIA_BASE_URL pointed at the test
client's host) and decoded, so every claim about a stored file is checked on its bytes."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article, ArticleStatus
from app.core.db import utcnow
from app.media.images import KINDS
from app.media.models import Media, article_media
from app.media.storage import IMMUTABLE
from app.outbox.models import Delivery
from app.users.models import Role, User
from tests import images
from tests.factories import bearer, make_article, make_token, make_user
from tests.support import S3Server, assert_problem, moto_s3, s3_values

API = "/api/v1/media"
FILES = "http://testserver/media"
CENTRE = "f05000500"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"media_base_url": FILES}


@pytest.fixture
async def author(session: AsyncSession) -> User:
    return await make_user(session, role=Role.author)


@pytest.fixture
async def author_token(session: AsyncSession, author: User) -> str:
    return await make_token(session, author)


@pytest.fixture
async def editor_token(session: AsyncSession) -> str:
    return await make_token(session, await make_user(session, role=Role.editor))


async def post_file(
    client: httpx.AsyncClient,
    token: str | None,
    data: bytes,
    *,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    **fields: Any,
) -> httpx.Response:
    return await client.post(
        API,
        files={"file": (filename, data, content_type)},
        data={name: str(value) for name, value in fields.items()},
        headers=bearer(token) if token else {},
    )


async def upload(
    client: httpx.AsyncClient, token: str, data: bytes, **options: Any
) -> dict[str, Any]:
    response = await post_file(client, token, data, **options)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def fetch(client: httpx.AsyncClient, url: str) -> httpx.Response:
    assert url.startswith(f"{FILES}/"), url
    return await client.get(url)


async def file_of(client: httpx.AsyncClient, url: str) -> bytes:
    response = await fetch(client, url)
    assert response.status_code == 200, f"{url}: {response.status_code}"
    return response.content


def stored_files(app: FastAPI) -> list[Path]:
    root: Path = app.state.settings.media_root
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def media_rows(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Media)) or 0


async def feature(
    session: AsyncSession,
    author: User,
    media_id: int,
    *,
    status: ArticleStatus = ArticleStatus.published,
    published_at: datetime | None = None,
) -> Article:
    """An article showing the media item as its featured image, set in the table directly."""
    article = await make_article(session, author, status=status, published_at=published_at)
    article.featured_media_id = media_id
    await session.commit()
    return article


def crop_names(tag: str, *, webp: bool = True) -> set[str]:
    names = {f"crop-{r}-{tag}" for r in ("1x1", "4x3", "16x9")}
    return names | {f"{n}-webp" for n in names} if webp else names


def near(pixel: Any, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


FORMATS = [
    ("JPEG", "image/jpeg", "jpg"),
    ("PNG", "image/png", "png"),
    ("WEBP", "image/webp", "webp"),
    *([("AVIF", "image/avif", "avif")] if "AVIF" in KINDS else []),
]


class TestUploadMakesRenditions:
    @pytest.mark.parametrize(("format", "mime", "ext"), FORMATS)
    async def test_each_type_gets_its_widths_webp_and_crops(
        self, client: httpx.AsyncClient, author_token: str, format: str, mime: str, ext: str
    ) -> None:
        data = images.encode(images.picture(700, 400), format)
        response = await post_file(client, author_token, data, filename=f"harbour.{ext}")
        assert response.status_code == 201, response.text
        body = response.json()
        assert response.headers["location"] == f"{API}/{body['id']}"
        assert (body["mime_type"], body["width"], body["height"]) == (mime, 700, 400)
        own_webp = format == "WEBP"
        expected = {"full", "w320", "w640"} | crop_names(CENTRE, webp=not own_webp)
        if not own_webp:
            expected |= {"full-webp", "w320-webp", "w640-webp"}
        sizes = body["sizes"]
        assert set(sizes) == expected
        assert body["url"] == sizes["full"]["url"]
        assert (sizes["w320"]["width"], sizes["w320"]["height"]) == (320, 183)
        assert (sizes["w640"]["width"], sizes["w640"]["height"]) == (640, 366)
        for name, size in sizes.items():
            response = await fetch(client, size["url"])
            assert response.status_code == 200, name
            assert response.headers["content-type"] == size["mime_type"]
            assert response.headers["cache-control"] == IMMUTABLE
            decoded = images.decode(response.content)
            assert KINDS[decoded.format or ""].mime == size["mime_type"], name
            assert decoded.size == (size["width"], size["height"]), name
            assert size["mime_type"] == ("image/webp" if name.endswith("-webp") else mime)

    async def test_srcsets_list_the_widths_then_the_full_image(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        body = await upload(client, author_token, images.jpeg(700, 400))
        sizes = body["sizes"]
        assert body["srcset"] == (
            f"{sizes['w320']['url']} 320w, {sizes['w640']['url']} 640w, {sizes['full']['url']} 700w"
        )
        assert body["srcset_webp"] == (
            f"{sizes['w320-webp']['url']} 320w, {sizes['w640-webp']['url']} 640w, "
            f"{sizes['full-webp']['url']} 700w"
        )

    async def test_never_upscaled(self, client: httpx.AsyncClient, author_token: str) -> None:
        body = await upload(client, author_token, images.jpeg(500, 300))
        widths = {n for n in body["sizes"] if not n.startswith("crop-")}
        assert widths == {"full", "full-webp", "w320", "w320-webp"}
        assert all(size["width"] <= 500 for size in body["sizes"].values())

    async def test_wide_image_gets_every_width_and_crops_at_most_1600(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        body = await upload(client, author_token, images.jpeg(2100, 1000))
        sizes = body["sizes"]
        assert {"w320", "w640", "w1024", "w1600", "w2048"} <= set(sizes)
        # Wider than the widest rendition: the full size is not offered again as WebP.
        assert "full-webp" not in sizes
        assert not body["srcset"].endswith("2100w")
        crops = {n: s for n, s in sizes.items() if n.startswith("crop-")}
        assert max(s["width"] for s in crops.values()) == 1600
        assert (sizes[f"crop-16x9-{CENTRE}"]["width"], sizes[f"crop-16x9-{CENTRE}"]["height"]) == (
            1600,
            900,
        )

    async def test_animated_gif_keeps_its_frames(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        body = await upload(
            client, author_token, images.animated_gif(frames=3), filename="loop.gif"
        )
        assert body["mime_type"] == "image/gif"
        full = images.decode(await file_of(client, body["sizes"]["full"]["url"]))
        assert full.format == "GIF"
        assert getattr(full, "n_frames", 1) == 3
        # Renditions are stills of the first frame.
        first = images.decode(await file_of(client, body["sizes"][f"crop-1x1-{CENTRE}"]["url"]))
        assert near(first.convert("RGB").getpixel((10, 10)), images.RED)

    async def test_type_is_told_by_content_not_by_name(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        body = await upload(
            client, author_token, images.png(), filename="photo.jpg", content_type="image/jpeg"
        )
        assert body["mime_type"] == "image/png"
        assert body["sizes"]["full"]["url"].endswith(".png")
        response = await fetch(client, body["url"])
        assert response.headers["content-type"] == "image/png"
        assert images.decode(response.content).format == "PNG"

    async def test_16_bit_greyscale_keeps_its_tones(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        body = await upload(
            client, author_token, images.grey16_png(value=30_000), filename="scan.png"
        )
        # 30000 of 65535 is 117 of 255 in every file, not clipped to white.
        for name, size in body["sizes"].items():
            decoded = images.decode(await file_of(client, size["url"])).convert("L")
            assert abs(decoded.getpixel((5, 5)) - 117) <= 2, name


class TestTransparency:
    async def test_a_png_with_one_transparent_colour_keeps_it_transparent(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        picture = Image.new("RGB", (400, 300), (255, 0, 255))
        picture.paste((20, 120, 40), (100, 75, 300, 225))
        out = io.BytesIO()
        picture.save(out, "PNG", transparency=(255, 0, 255))
        media = await upload(client, author_token, out.getvalue(), filename="logo.png")
        for name in ("full", "w320"):
            stored = Image.open(io.BytesIO(await file_of(client, media["sizes"][name]["url"])))
            assert stored.mode == "RGBA", name
            width, height = stored.size
            assert stored.getpixel((0, 0))[3] == 0, name  # the keyed colour: see-through
            assert stored.getpixel((width // 2, height // 2))[3] == 255, name


class TestOrientation:
    async def test_exif_orientation_is_applied(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        picture = images.picture(400, 200)
        picture.paste(images.RED, (0, 0, 200, 200))  # the left half
        data = images.encode(picture, "JPEG", exif=images.exif(orientation=6))
        body = await upload(client, author_token, data)
        assert (body["width"], body["height"]) == (200, 400)
        full = images.decode(await file_of(client, body["url"]))
        assert full.size == (200, 400)
        assert images.ORIENTATION not in full.getexif()
        # Orientation 6 is turned a quarter clockwise: the left half ends up on top.
        assert near(full.getpixel((100, 50)), images.RED)
        assert near(full.getpixel((100, 350)), images.GREY)


CREDIT, RIGHTS, CAPTION = "Agency-XMP-credit", "XMP-rights-2024", "XMP caption words"


def tagged_jpeg() -> bytes:
    data = images.encode(
        images.picture(700, 400),
        "JPEG",
        exif=images.exif(gps=True, taken="2024:05:06 07:08:09"),
        xmp=images.xmp_packet(credit=CREDIT, rights=RIGHTS, caption=CAPTION),
    )
    return images.with_iptc(
        data, {80: "Jane Roe", 110: "IPTC-Agency", 116: "IPTC-Copyright", 120: "IPTC caption"}
    )


class TestMetadata:
    async def assert_clean(self, client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        for name, size in body["sizes"].items():
            raw = await file_of(client, size["url"])
            for marker in (
                b"Photoshop 3.0",
                b"8BIM",
                b"xmpmeta",
                b"http://ns.adobe.com",
                b"Jane Roe",
                b"IPTC-Agency",
                CREDIT.encode(),
                b"2024:05:06",
            ):
                assert marker not in raw, f"{name} holds {marker!r}"
            decoded = images.decode(raw)
            for key in ("exif", "xmp", "XML:com.adobe.xmp", "photoshop"):
                assert key not in decoded.info, f"{name} has {key}"
            found = decoded.getexif()
            assert not found.get_ifd(0x8825), f"{name} has GPS"
            assert not dict(found), f"{name} has EXIF {dict(found)}"

    async def test_jpeg_metadata_is_read_then_stripped_from_every_file(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        body = await upload(client, author_token, tagged_jpeg())
        # IPTC first, then XMP; the agency and the by-line together.
        assert body["credit"] == "IPTC-Agency / Jane Roe"
        assert body["copyright"] == "IPTC-Copyright"
        assert body["caption"] == "IPTC caption"
        assert body["taken_at"] in ("2024-05-06T07:08:09Z", "2024-05-06T07:08:09+00:00")
        await self.assert_clean(client, body)

    async def test_xmp_alone_gives_the_defaults(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        data = images.encode(
            images.picture(400, 300),
            "JPEG",
            xmp=images.xmp_packet(credit=CREDIT, rights=RIGHTS, caption=CAPTION),
        )
        body = await upload(client, author_token, data)
        assert (body["credit"], body["copyright"], body["caption"]) == (CREDIT, RIGHTS, CAPTION)
        assert body["taken_at"] is None

    async def test_form_fields_override_the_file(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        body = await upload(
            client,
            author_token,
            tagged_jpeg(),
            credit="Photo: Our Staff",
            copyright="© Us",
            caption="Our words",
            alt_text="A harbour",
        )
        assert (body["credit"], body["copyright"], body["caption"], body["alt_text"]) == (
            "Photo: Our Staff",
            "© Us",
            "Our words",
            "A harbour",
        )
        assert body["taken_at"] is not None

    @pytest.mark.parametrize("format", ["WEBP", "PNG"])
    async def test_other_types_lose_exif_and_xmp_too(
        self, client: httpx.AsyncClient, author_token: str, format: str
    ) -> None:
        data = images.encode(
            images.picture(400, 300),
            format,
            exif=images.exif(gps=True, taken="2024:05:06 07:08:09"),
            xmp=images.xmp_packet(credit=CREDIT, rights=RIGHTS, caption=CAPTION),
        )
        tagged = images.decode(data)
        assert tagged.getexif().get_ifd(0x8825)
        assert b"xmpmeta" in data
        body = await upload(client, author_token, data, filename=f"x.{format.lower()}")
        await self.assert_clean(client, body)


class TestRefusals:
    @pytest.fixture(autouse=True)
    def _nothing_left(self, app: FastAPI) -> Iterator[None]:
        yield
        assert stored_files(app) == []

    @pytest.mark.parametrize(
        ("make", "filename", "status", "kind"),
        [
            (
                lambda: b"just some words, not a picture\n" * 10,
                "notes.jpg",
                422,
                "undecodable-image",
            ),
            (lambda: images.jpeg(400, 300)[:-600], "cut.jpg", 422, "undecodable-image"),
            (images.bmp, "old.bmp", 415, "unsupported-image"),
            (images.tiff, "scan.tif", 415, "unsupported-image"),
            (images.pixel_bomb, "bomb.png", 422, "image-too-large"),
        ],
        ids=["text", "truncated", "bmp", "tiff", "pixel-bomb"],
    )
    async def test_unusable_files_are_refused(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        author_token: str,
        make: Callable[[], bytes],
        filename: str,
        status: int,
        kind: str,
    ) -> None:
        response = await post_file(client, author_token, make(), filename=filename)
        assert response.status_code == status, response.text
        assert assert_problem(response, status)["type"].endswith(f"/problems/{kind}")
        assert await media_rows(session) == 0

    async def test_json_body_is_415(
        self, client: httpx.AsyncClient, session: AsyncSession, author_token: str
    ) -> None:
        response = await client.post(API, json={"title": "x"}, headers=bearer(author_token))
        assert response.status_code == 415, response.text
        assert_problem(response, 415)
        assert await media_rows(session) == 0

    async def test_missing_file_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, author_token: str
    ) -> None:
        response = await client.post(
            API, files={"title": (None, "No file")}, headers=bearer(author_token)
        )
        assert response.status_code == 422, response.text
        assert_problem(response, 422)
        assert await media_rows(session) == 0

    async def test_focal_point_outside_the_image_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, author_token: str
    ) -> None:
        response = await post_file(client, author_token, images.jpeg(), focal_x=1.5)
        assert response.status_code == 422, response.text
        assert assert_problem(response, 422)["errors"][0]["field"] == "focal_x"
        assert await media_rows(session) == 0


class TestFileRoute:
    @pytest.mark.parametrize(
        "path",
        ["/media/2026/12/nothing/here.jpg", "/media/..%2F..%2Fetc/passwd", "/media/.env"],
    )
    async def test_only_stored_keys_are_served(self, client: httpx.AsyncClient, path: str) -> None:
        response = await client.get(path)
        assert response.status_code == 404, response.text


class TestByteLimit:
    LIMIT = 20_000

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"media_base_url": FILES, "media_max_bytes": self.LIMIT}

    async def test_over_the_limit_is_413_and_leaves_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, author_token: str
    ) -> None:
        # Past the route's own check, within the request guard's allowance for the form.
        data = images.png(300, 300) + bytes(self.LIMIT)
        response = await post_file(client, author_token, data, filename="big.png")
        assert response.status_code == 413, response.text
        assert_problem(response, 413)
        # Far past it: the guard refuses before the body is read.
        huge = await post_file(client, author_token, bytes(10 * self.LIMIT), filename="x.png")
        assert huge.status_code == 413, huge.text
        assert await media_rows(session) == 0
        assert stored_files(app) == []
        small = await post_file(client, author_token, images.png(300, 300), filename="ok.png")
        assert small.status_code == 201, small.text


class TestStorageDown:
    @pytest.fixture
    def settings_overrides(self, tmp_path: Path) -> dict[str, Any]:
        # A file where the folder should be: every put fails, as on a full or lost disk.
        blocked = tmp_path / "media"
        blocked.write_text("not a folder")
        return {"media_base_url": FILES, "media_root": blocked}

    async def test_a_storage_failure_is_a_503_and_leaves_no_row(
        self, client: httpx.AsyncClient, session: AsyncSession, author_token: str
    ) -> None:
        response = await post_file(client, author_token, images.png(400, 300), filename="a.png")
        problem = assert_problem(response, 503)
        assert "nothing was stored" in problem["detail"]
        assert response.headers["retry-after"]
        assert await media_rows(session) == 0


class TestCrops:
    async def test_ratios_are_exact(self, client: httpx.AsyncClient, author_token: str) -> None:
        body = await upload(client, author_token, images.jpeg(1111, 777), focal_x=0.3)
        for ratio, (rw, rh) in (("1x1", (1, 1)), ("4x3", (4, 3)), ("16x9", (16, 9))):
            size = body["sizes"][f"crop-{ratio}-f03000500"]
            assert abs(size["width"] * rh / rw - size["height"]) <= 1, (ratio, size)
            decoded = images.decode(await file_of(client, size["url"]))
            assert decoded.size == (size["width"], size["height"])

    async def test_crops_centre_on_the_focal_point_within_the_edges(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        # A red block at (900, 300) of 1200×600, the focal point on it.
        picture = images.with_block(1200, 600, (900, 300), 60, images.RED)
        body = await upload(
            client, author_token, images.encode(picture, "PNG"), focal_x=0.75, focal_y=0.5
        )
        tag = "f07500500"
        square = images.decode(await file_of(client, body["sizes"][f"crop-1x1-{tag}"]["url"]))
        assert square.size == (600, 600)
        assert near(square.getpixel((300, 300)), images.RED)
        # 800 wide would pass the right edge centred on x=900: it ends at the edge instead.
        four = images.decode(await file_of(client, body["sizes"][f"crop-4x3-{tag}"]["url"]))
        assert four.size == (800, 600)
        assert near(four.getpixel((400, 300)), images.GREY)
        assert near(four.getpixel((500, 300)), images.RED)
        assert near(four.getpixel((799, 300)), images.GREY)
        wide = images.decode(await file_of(client, body["sizes"][f"crop-16x9-{tag}"]["url"]))
        assert wide.size == (1067, 600)
        assert near(wide.getpixel((900 - (1200 - 1067), 300)), images.RED)

    async def test_moving_the_focal_point_replaces_only_the_crops(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        picture = images.with_block(1200, 600, (240, 300), 60, images.BLUE)
        body = await upload(client, author_token, images.encode(picture, "JPEG"))
        before = body["sizes"]
        etag = (await client.get(f"{API}/{body['id']}", headers=bearer(author_token))).headers[
            "etag"
        ]
        response = await client.patch(
            f"{API}/{body['id']}",
            json={"focal_x": 0.2, "focal_y": 0.5},
            headers={**bearer(author_token), "If-Match": etag},
        )
        assert response.status_code == 200, response.text
        after = response.json()["sizes"]
        assert {n for n in after if n.startswith("crop-")} == crop_names("f02000500")
        kept = {n for n in before if not n.startswith("crop-")}
        assert {n: after[n] for n in kept} == {n: before[n] for n in kept}
        for name in crop_names(CENTRE):
            assert (await fetch(client, before[name]["url"])).status_code == 404, name
        for name in kept:
            assert (await fetch(client, after[name]["url"])).status_code == 200, name
        square = images.decode(await file_of(client, after["crop-1x1-f02000500"]["url"]))
        assert near(square.getpixel((240, 300)), images.BLUE)
        again = await client.get(f"{API}/{body['id']}", headers=bearer(author_token))
        assert again.json()["sizes"] == after

    async def test_a_move_within_the_crop_names_rounding_keeps_the_crops(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        body = await upload(client, author_token, images.jpeg(600, 400))
        response = await client.patch(
            f"{API}/{body['id']}", json={"focal_x": 0.5002}, headers=bearer(author_token)
        )
        assert response.status_code == 200, response.text
        moved = response.json()
        assert moved["focal_x"] == 0.5002
        assert moved["sizes"] == body["sizes"]
        for name, size in moved["sizes"].items():
            assert (await fetch(client, size["url"])).status_code == 200, name

    async def test_null_focal_point_leaves_it_alone(
        self, client: httpx.AsyncClient, author_token: str
    ) -> None:
        body = await upload(client, author_token, images.jpeg(600, 400), focal_x=0.25)
        response = await client.patch(
            f"{API}/{body['id']}",
            json={"focal_x": None, "focal_y": None},
            headers=bearer(author_token),
        )
        assert response.status_code == 200, response.text
        assert (response.json()["focal_x"], response.json()["focal_y"]) == (0.25, 0.5)
        assert response.json()["sizes"] == body["sizes"]


class TestVisibility:
    async def test_anonymous_sees_only_what_public_articles_show(
        self, client: httpx.AsyncClient, session: AsyncSession, author: User, author_token: str
    ) -> None:
        featured = await upload(client, author_token, images.jpeg(), title="Featured")
        in_body = await upload(client, author_token, images.jpeg(), title="In body")
        on_draft = await upload(client, author_token, images.jpeg(), title="On a draft")
        embargoed = await upload(client, author_token, images.jpeg(), title="Embargoed")
        unused = await upload(client, author_token, images.jpeg(), title="Unused")
        for item in (featured, in_body, on_draft, embargoed, unused):
            response = await client.get(f"{API}/{item['id']}")
            assert response.status_code == 404, response.text
        await feature(session, author, featured["id"])
        article = await make_article(session, author)
        await session.execute(
            insert(article_media).values(article_id=article.id, media_id=in_body["id"])
        )
        await session.commit()
        await feature(session, author, on_draft["id"], status=ArticleStatus.draft)
        await feature(
            session,
            author,
            embargoed["id"],
            status=ArticleStatus.scheduled,
            published_at=utcnow() + timedelta(days=1),
        )
        for item in (featured, in_body):
            response = await client.get(f"{API}/{item['id']}")
            assert response.status_code == 200, response.text
        for item in (on_draft, embargoed, unused):
            response = await client.get(f"{API}/{item['id']}")
            assert response.status_code == 404, f"{item['title']}: {response.text}"
        listing = await client.get(API)
        assert listing.status_code == 200, listing.text
        assert [m["title"] for m in listing.json()["items"]] == ["In body", "Featured"]
        assert listing.headers["x-total-count"] == "2"
        newsroom = await client.get(API, headers=bearer(author_token))
        assert newsroom.headers["x-total-count"] == "5"
        for item in (on_draft, embargoed, unused):
            response = await client.get(f"{API}/{item['id']}", headers=bearer(author_token))
            assert response.status_code == 200, response.text

    async def test_list_filters_and_pages(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        author: User,
        author_token: str,
        editor_token: str,
    ) -> None:
        mine_jpeg = await upload(client, author_token, images.jpeg(), title="Harbour at dawn")
        mine_png = await upload(client, author_token, images.png(), caption="Lighthouse")
        theirs = await upload(client, editor_token, images.jpeg(), credit="Photo: Gull Agency")
        old = datetime(2020, 1, 1, tzinfo=UTC)
        await session.execute(
            update(Media).where(Media.id == mine_png["id"]).values(created_at=old)
        )
        await session.commit()

        async def ids(**params: Any) -> list[int]:
            response = await client.get(API, params=params, headers=bearer(author_token))
            assert response.status_code == 200, response.text
            assert response.headers["x-total-count"] == str(response.json()["total"])
            return [m["id"] for m in response.json()["items"]]

        assert await ids() == [theirs["id"], mine_jpeg["id"], mine_png["id"]]
        assert await ids(uploader=author.id) == [mine_jpeg["id"], mine_png["id"]]
        assert await ids(type="image/png") == [mine_png["id"]]
        assert await ids(q="harbour") == [mine_jpeg["id"]]
        assert await ids(q="lighthouse") == [mine_png["id"]]
        assert await ids(q="gull") == [theirs["id"]]
        assert await ids(before="2021-01-01T00:00:00Z") == [mine_png["id"]]
        assert await ids(after="2021-01-01T00:00:00Z") == [theirs["id"], mine_jpeg["id"]]
        assert await ids(per_page=2, page=2) == [mine_png["id"]]
        first = await client.get(API, params={"per_page": 2}, headers=bearer(author_token))
        assert first.headers["x-total-count"] == "3"
        assert first.json()["pages"] == 2
        bad = await client.get(API, params={"type": "image/bmp"}, headers=bearer(author_token))
        assert_problem(bad, 422)


class TestPermissions:
    async def test_anonymous_upload_is_401(self, client: httpx.AsyncClient) -> None:
        response = await post_file(client, None, images.jpeg())
        assert response.status_code == 401, response.text

    async def test_token_without_media_write_is_403(
        self, client: httpx.AsyncClient, session: AsyncSession, author: User
    ) -> None:
        token = await make_token(session, author, scopes=["articles:read"])
        response = await post_file(client, token, images.jpeg())
        assert response.status_code == 403, response.text

    async def test_authors_change_only_their_own_and_editors_any(
        self, client: httpx.AsyncClient, session: AsyncSession, editor_token: str
    ) -> None:
        owner = await make_token(session, await make_user(session, role=Role.author))
        other = await make_token(session, await make_user(session, role=Role.author))
        item = await upload(client, owner, images.jpeg())
        url = f"{API}/{item['id']}"
        response = await client.patch(url, json={"title": "Not mine"}, headers=bearer(other))
        assert response.status_code == 403, response.text
        response = await client.delete(url, headers=bearer(other))
        assert response.status_code == 403, response.text
        response = await client.patch(url, json={"title": "Mine"}, headers=bearer(owner))
        assert (response.status_code, response.json()["title"]) == (200, "Mine"), response.text
        response = await client.patch(url, json={"title": "Edited"}, headers=bearer(editor_token))
        assert (response.status_code, response.json()["title"]) == (200, "Edited"), response.text
        response = await client.delete(url, headers=bearer(editor_token))
        assert response.status_code == 204, response.text


class TestDeletion:
    async def test_refused_while_a_published_article_shows_it(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        author: User,
        author_token: str,
        editor_token: str,
    ) -> None:
        item = await upload(client, author_token, images.jpeg())
        article = await feature(session, author, item["id"])
        url = f"{API}/{item['id']}"
        response = await client.delete(url, headers=bearer(author_token))
        assert response.status_code == 409, response.text
        assert_problem(response, 409)
        response = await client.delete(url, params={"force": "true"}, headers=bearer(author_token))
        assert response.status_code == 403, response.text
        assert (await fetch(client, item["url"])).status_code == 200
        response = await client.delete(url, params={"force": "true"}, headers=bearer(editor_token))
        assert response.status_code == 204, response.text
        featured = select(Article.featured_media_id).where(Article.id == article.id)
        session.expire_all()
        assert await session.scalar(featured) is None
        assert await media_rows(session) == 0
        for name, size in item["sizes"].items():
            assert (await fetch(client, size["url"])).status_code == 404, name
        assert stored_files(app) == []
        assert (await client.get(url, headers=bearer(editor_token))).status_code == 404

    async def test_refused_while_a_scheduled_article_shows_it(
        self, client: httpx.AsyncClient, session: AsyncSession, author: User, author_token: str
    ) -> None:
        item = await upload(client, author_token, images.jpeg())
        await feature(
            session,
            author,
            item["id"],
            status=ArticleStatus.scheduled,
            published_at=utcnow() + timedelta(days=1),
        )
        response = await client.delete(f"{API}/{item['id']}", headers=bearer(author_token))
        assert response.status_code == 409, response.text

    async def test_unused_item_is_deleted_with_its_files(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        author: User,
        author_token: str,
    ) -> None:
        item = await upload(client, author_token, images.jpeg())
        # A draft does not hold it back.
        await feature(session, author, item["id"], status=ArticleStatus.draft)
        response = await client.delete(f"{API}/{item['id']}", headers=bearer(author_token))
        assert response.status_code == 204, response.text
        assert await media_rows(session) == 0
        assert stored_files(app) == []

    async def test_stale_if_match_is_412(
        self, client: httpx.AsyncClient, session: AsyncSession, author_token: str
    ) -> None:
        item = await upload(client, author_token, images.jpeg())
        url = f"{API}/{item['id']}"
        etag = (await client.get(url, headers=bearer(author_token))).headers["etag"]
        response = await client.patch(
            url, json={"title": "Changed"}, headers={**bearer(author_token), "If-Match": etag}
        )
        assert response.status_code == 200, response.text
        for method in ("PATCH", "DELETE"):
            response = await client.request(
                method,
                url,
                json={"title": "Again"} if method == "PATCH" else None,
                headers={**bearer(author_token), "If-Match": etag},
            )
            assert response.status_code == 412, f"{method}: {response.text}"
        assert await media_rows(session) == 1
        fresh = (await client.get(url, headers=bearer(author_token))).headers["etag"]
        response = await client.delete(url, headers={**bearer(author_token), "If-Match": fresh})
        assert response.status_code == 204, response.text


class TestAltText:
    async def test_cannot_be_emptied_while_a_published_article_shows_it(
        self, client: httpx.AsyncClient, session: AsyncSession, author: User, author_token: str
    ) -> None:
        item = await upload(client, author_token, images.jpeg(), alt_text="Boats")
        url = f"{API}/{item['id']}"
        await feature(session, author, item["id"])
        for empty in ("", None):
            response = await client.patch(
                url, json={"alt_text": empty}, headers=bearer(author_token)
            )
            assert response.status_code == 422, response.text
            assert assert_problem(response, 422)["errors"][0]["field"] == "alt_text"
        response = await client.patch(
            url, json={"alt_text": "Fishing boats"}, headers=bearer(author_token)
        )
        assert response.status_code == 200, response.text
        assert (await client.get(url)).json()["alt_text"] == "Fishing boats"

    async def test_can_be_emptied_while_unused_or_on_a_draft(
        self, client: httpx.AsyncClient, session: AsyncSession, author: User, author_token: str
    ) -> None:
        item = await upload(client, author_token, images.jpeg(), alt_text="Boats")
        await feature(session, author, item["id"], status=ArticleStatus.draft)
        response = await client.patch(
            f"{API}/{item['id']}", json={"alt_text": ""}, headers=bearer(author_token)
        )
        assert response.status_code == 200, response.text
        assert response.json()["alt_text"] == ""


class TestWebhooks:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {
            "media_base_url": FILES,
            "webhook_allow_private_targets": True,
            "webhook_worker": False,
        }

    async def test_created_updated_deleted_are_queued(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, author_token: str
    ) -> None:
        admin = await make_token(session, await make_user(session, role=Role.admin))
        hook = await client.post(
            "/api/v1/webhooks",
            json={
                "url": "http://127.0.0.1:9/hook",
                "events": ["media.created", "media.updated", "media.deleted"],
            },
            headers=bearer(admin),
        )
        assert hook.status_code == 201, hook.text
        item = await upload(client, author_token, images.jpeg(), title="Harbour")
        url = f"{API}/{item['id']}"
        response = await client.patch(url, json={"title": "Port"}, headers=bearer(author_token))
        assert response.status_code == 200, response.text
        response = await client.delete(url, headers=bearer(author_token))
        assert response.status_code == 204, response.text
        async with app.state.sessionmaker() as s:
            rows = list(await s.scalars(select(Delivery).order_by(Delivery.created_at)))
        bodies = [orjson.loads(row.payload) for row in rows]
        assert [b["event"] for b in bodies] == ["media.created", "media.updated", "media.deleted"]
        assert all(row.webhook_id == hook.json()["id"] for row in rows)
        assert all(b["data"]["id"] == item["id"] for b in bodies)
        assert [b["data"]["title"] for b in bodies] == ["Harbour", "Port", "Port"]
        assert bodies[0]["data"]["url"] == item["url"]

    async def test_nothing_is_queued_for_a_refused_upload(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, author_token: str
    ) -> None:
        admin = await make_token(session, await make_user(session, role=Role.admin))
        hook = await client.post(
            "/api/v1/webhooks",
            json={"url": "http://127.0.0.1:9/hook", "events": ["media.created"]},
            headers=bearer(admin),
        )
        assert hook.status_code == 201, hook.text
        response = await post_file(client, author_token, b"not an image" * 20)
        assert response.status_code == 422, response.text
        async with app.state.sessionmaker() as s:
            assert await s.scalar(select(func.count()).select_from(Delivery)) == 0


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        yield server


class TestS3:
    @pytest.fixture
    def settings_overrides(self, s3_server: S3Server) -> dict[str, Any]:
        return s3_values(s3_server)

    async def test_upload_is_read_from_the_bucket_and_deleted_from_it(
        self, app: FastAPI, client: httpx.AsyncClient, s3_server: S3Server, author_token: str
    ) -> None:
        item = await upload(client, author_token, images.jpeg(700, 400))
        assert item["url"].startswith(f"{s3_server.endpoint}/{s3_server.bucket}/")
        async with httpx.AsyncClient(timeout=5) as outside:
            for name, size in item["sizes"].items():
                response = await outside.get(size["url"])
                assert response.status_code == 200, f"{name}: {response.status_code}"
                assert response.headers["content-type"] == size["mime_type"]
                assert response.headers["cache-control"] == IMMUTABLE
                decoded = Image.open(io.BytesIO(response.content))
                assert decoded.size == (size["width"], size["height"]), name
            # Nothing on local disk, and the app does not serve S3 keys itself.
            assert stored_files(app) == []
            key = item["url"].removeprefix(f"{s3_server.endpoint}/{s3_server.bucket}/")
            assert (await client.get(f"/media/{key}")).status_code == 404
            response = await client.delete(f"{API}/{item['id']}", headers=bearer(author_token))
            assert response.status_code == 204, response.text
            for name, size in item["sizes"].items():
                response = await outside.get(size["url"])
                # S3 answers 403 rather than 404 to readers who may not list the bucket.
                assert response.status_code in (403, 404), name
