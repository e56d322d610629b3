"""Media items as the API shows them, on their own or inside an article."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.core.config import Settings
from app.media.images import WIDTHS
from app.media.models import Media
from app.media.schemas import MediaPublic, MediaRef, MediaSize
from app.media.storage import files_url

_WIDTH = re.compile(r"^w\d+$")
_WIDTH_WEBP = re.compile(r"^w\d+-webp$")


@dataclass(slots=True)
class MediaRow:
    """An image as the articles' read path reads it: what showing it needs."""

    id: int
    width: int
    height: int
    mime_type: str
    alt_text: str
    caption: str
    credit: str
    copyright: str
    sizes: dict[str, Any]


# An image as shown: the ORM row, or a row of the articles' read path.
Shown = Media | MediaRow

# The columns of `MediaRow`, in its order.
SHOWN_COLUMNS = (
    *("id", "width", "height", "mime_type", "alt_text", "caption", "credit", "copyright"),
    "sizes",
)


def _srcset(settings: Settings, sizes: dict[str, Any], width: int, webp: bool) -> str:
    pattern = _WIDTH_WEBP if webp else _WIDTH
    chosen = [size for name, size in sizes.items() if pattern.match(name)]
    # The full image joins the set only while it is no heavier than the widest rendition.
    full = sizes.get("full-webp" if webp else "full")
    if full is not None and width <= WIDTHS[-1]:
        chosen.append(full)
    chosen.sort(key=lambda size: size["width"])
    return ", ".join(f"{files_url(settings, s['key'])} {s['width']}w" for s in chosen)


def large(sizes: dict[str, Any]) -> dict[str, Any]:
    """The rendition feeds and sitemaps point at: the widest of the original's format up to
    2048 pixels, or the full image when it is no wider."""
    full = sizes["full"]
    if full["width"] <= WIDTHS[-1]:
        return dict(full)
    widths = [size for name, size in sizes.items() if _WIDTH.match(name)]
    return dict(max(widths, key=lambda size: size["width"], default=full))


def _ref_fields(media: Shown, settings: Settings) -> dict[str, Any]:
    sizes = {
        name: MediaSize(
            url=files_url(settings, size["key"]),
            width=size["width"],
            height=size["height"],
            mime_type=size["mime_type"],
        )
        for name, size in media.sizes.items()
    }
    return {
        "id": media.id,
        "url": sizes["full"].url,
        "width": media.width,
        "height": media.height,
        "mime_type": media.mime_type,
        "alt_text": media.alt_text,
        "caption": media.caption,
        "credit": media.credit,
        "copyright": media.copyright,
        "sizes": sizes,
        "srcset": _srcset(settings, media.sizes, media.width, webp=False),
        "srcset_webp": _srcset(settings, media.sizes, media.width, webp=True),
    }


def ref(media: Shown, settings: Settings) -> MediaRef:
    return MediaRef.model_construct(**_ref_fields(media, settings))


def public(media: Media, settings: Settings) -> MediaPublic:
    return MediaPublic.model_construct(
        **_ref_fields(media, settings),
        title=media.title,
        description=media.description,
        source_url=media.source_url,
        focal_x=media.focal_x,
        focal_y=media.focal_y,
        file_size=media.file_size,
        taken_at=media.taken_at,
        uploader_id=media.uploader_id,
        created_at=media.created_at,
        updated_at=media.updated_at,
    )
