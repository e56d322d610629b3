"""Decoding, checking and resizing uploaded images with Pillow: pure functions on bytes, run
in worker threads by the service (each holds a whole decoded photo).

Every file this module returns is encoded afresh from the decoded pixels with no metadata
but the colour profile: EXIF (GPS, camera serials), XMP and IPTC never reach storage, so no
location can leak from an original or a rendition. The orientation is applied first, and
what the newsroom wants from the metadata (date taken, credit, copyright, caption) is read
before it is dropped.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from defusedxml import ElementTree
from PIL import Image, ImageFile, ImageOps, IptcImagePlugin, UnidentifiedImageError, features

# Our own pixel limit (MEDIA_MAX_PIXELS) is checked from the header before any decoding;
# Pillow's global guess would refuse or warn at a different size.
Image.MAX_IMAGE_PIXELS = None

WIDTHS = (320, 640, 1024, 1600, 2048)
# Google asks for article images at these three ratios; a crop is at most this wide.
RATIOS = ((1, 1), (4, 3), (16, 9))
CROP_WIDTH = 1600
WEBP = "WEBP"


@dataclass(frozen=True, slots=True)
class Kind:
    mime: str
    ext: str


KINDS: dict[str, Kind] = {
    "JPEG": Kind("image/jpeg", "jpg"),
    "PNG": Kind("image/png", "png"),
    "WEBP": Kind("image/webp", "webp"),
    "GIF": Kind("image/gif", "gif"),
}
if features.check("avif"):
    KINDS["AVIF"] = Kind("image/avif", "avif")
MIME_TYPES = tuple(kind.mime for kind in KINDS.values())


class ImageRefused(Exception):
    """Why an upload is not a usable image: `unsupported` (an image, but of a type outside
    the list), `undecodable` (not an image, or a broken one), `too-many-pixels`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Embedded:
    """What the file says about itself, offered as defaults for the media item's fields."""

    taken_at: datetime | None = None
    credit: str | None = None
    copyright: str | None = None
    caption: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Rendition:
    name: str
    data: bytes
    width: int
    height: int
    kind: Kind


@dataclass(slots=True)
class Processed:
    kind: Kind
    width: int
    height: int
    embedded: Embedded
    files: list[Rendition] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Options:
    max_pixels: int
    quality: int


def open_checked(data: bytes, max_pixels: int) -> tuple[ImageFile.ImageFile, Kind]:
    """Identify by content (never by name or declared type), check the size from the header,
    then decode every pixel, so a broken file is refused here and not half-way through."""
    try:
        image = Image.open(io.BytesIO(data), formats=list(KINDS))
    except UnidentifiedImageError:
        raise _outside_the_list(data) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageRefused("undecodable", f"The file does not decode as an image ({exc}).") from exc
    frames = getattr(image, "n_frames", 1)
    pixels = image.width * image.height * frames
    if pixels > max_pixels:
        raise ImageRefused(
            "too-many-pixels",
            f"The image is {image.width}×{image.height}"
            + (f" in {frames} frames" if frames > 1 else "")
            + f"; at most {max_pixels:,} pixels are accepted.",
        )
    try:
        image.load()
        if frames > 1:
            for index in range(frames):
                image.seek(index)
                image.load()
            image.seek(0)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageRefused("undecodable", f"The image is damaged or truncated ({exc}).") from exc
    assert image.format is not None
    return image, KINDS[image.format]


def _outside_the_list(data: bytes) -> ImageRefused:
    try:
        with Image.open(io.BytesIO(data)) as other:
            name = other.format or "this"
    except Exception:
        return ImageRefused("undecodable", "The file is not an image that can be decoded.")
    accepted = ", ".join(KINDS)
    return ImageRefused("unsupported", f"{name} images are not accepted; send one of {accepted}.")


# --- what the file says about itself ---------------------------------------------------------

_EXIF_IFD = 0x8769
_EXIF_DATE_ORIGINAL = 0x9003
_EXIF_OFFSET_ORIGINAL = 0x9011
_EXIF_DATE = 0x0132
_EXIF_ARTIST = 0x013B
_EXIF_COPYRIGHT = 0x8298
_EXIF_DESCRIPTION = 0x010E
_IPTC_BYLINE = (2, 80)
_IPTC_CREDIT = (2, 110)
_IPTC_COPYRIGHT = (2, 116)
_IPTC_CAPTION = (2, 120)
_IPTC_TITLE = (2, 5)
_IPTC_DATE = (2, 55)
_IPTC_TIME = (2, 60)

_XMP_NAMES = {
    "{http://ns.adobe.com/photoshop/1.0/}Credit": "credit",
    "{http://purl.org/dc/elements/1.1/}creator": "byline",
    "{http://purl.org/dc/elements/1.1/}rights": "copyright",
    "{http://purl.org/dc/elements/1.1/}description": "caption",
    "{http://purl.org/dc/elements/1.1/}title": "title",
    "{http://ns.adobe.com/photoshop/1.0/}DateCreated": "date",
    "{http://ns.adobe.com/exif/1.0/}DateTimeOriginal": "date",
    "{http://ns.adobe.com/xap/1.0/}CreateDate": "date",
}
_MAX_TEXT = 500


def _clean(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    value = re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip()
    return value[:_MAX_TEXT] or None


def _xmp(image: Image.Image) -> dict[str, str]:
    raw = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if not raw:
        return {}
    try:
        root = ElementTree.fromstring(raw if isinstance(raw, bytes) else raw.encode())
    except Exception:
        return {}
    found: dict[str, str] = {}
    for element in root.iter():
        for attr, value in element.attrib.items():
            name = _XMP_NAMES.get(attr)
            if name and name not in found and (text := _clean(value)):
                found[name] = text
        name = _XMP_NAMES.get(element.tag)
        if name and name not in found:
            # dc:* properties hold their text in rdf:Alt / rdf:Seq / rdf:Bag items.
            texts = [t for t in (_clean(e.text) for e in element.iter()) if t]
            if texts:
                found[name] = texts[0]
    return found


_DATE_PATTERNS = (
    ("%Y:%m:%d %H:%M:%S", 19),
    ("%Y-%m-%dT%H:%M:%S", 19),
    ("%Y-%m-%dT%H:%M", 16),
    ("%Y-%m-%d", 10),
)


def _date(text: str | None, offset: str | None = None) -> datetime | None:
    if not text:
        return None
    text = text.strip()
    for pattern, length in _DATE_PATTERNS:
        try:
            moment = datetime.strptime(text[:length], pattern)  # noqa: DTZ007 - zone below
            break
        except ValueError:
            continue
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    if moment.tzinfo is None:
        zone = _offset(offset) or _offset(text[19:]) or UTC
        moment = moment.replace(tzinfo=zone)
    if not 1900 <= moment.year <= 2200:
        return None
    return moment.astimezone(UTC)


def _offset(text: str | None) -> timezone | None:
    match = re.fullmatch(r"\s*([+-])(\d\d):?(\d\d)\s*", text or "")
    if not match:
        return None
    sign = 1 if match[1] == "+" else -1
    return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))


def embedded(image: ImageFile.ImageFile) -> Embedded:
    exif = image.getexif()
    details = exif.get_ifd(_EXIF_IFD)
    try:
        iptc = IptcImagePlugin.getiptcinfo(image) or {}
    except Exception:
        iptc = {}
    xmp = _xmp(image)
    iptc_date = _clean(iptc.get(_IPTC_DATE))
    # IPTC: a date CCYYMMDD and a time HHMMSS±HHMM.
    iptc_time = _clean(iptc.get(_IPTC_TIME)) or "000000"
    if iptc_date and len(iptc_date) == 8:
        iptc_date = (
            f"{iptc_date[:4]}:{iptc_date[4:6]}:{iptc_date[6:]} "
            f"{iptc_time[:2]}:{iptc_time[2:4]}:{iptc_time[4:6]}"
        )
    taken = (
        _date(_clean(details.get(_EXIF_DATE_ORIGINAL)), _clean(details.get(_EXIF_OFFSET_ORIGINAL)))
        or _date(xmp.get("date"))
        or _date(iptc_date, iptc_time[6:])
        or _date(_clean(exif.get(_EXIF_DATE)))
    )
    byline = _clean(iptc.get(_IPTC_BYLINE)) or xmp.get("byline") or _clean(exif.get(_EXIF_ARTIST))
    agency = _clean(iptc.get(_IPTC_CREDIT)) or xmp.get("credit")
    credit = " / ".join(dict.fromkeys(p for p in (agency, byline) if p)) or None
    return Embedded(
        taken_at=taken,
        credit=credit,
        copyright=(
            _clean(iptc.get(_IPTC_COPYRIGHT))
            or xmp.get("copyright")
            or _clean(exif.get(_EXIF_COPYRIGHT))
        ),
        caption=(
            _clean(iptc.get(_IPTC_CAPTION))
            or xmp.get("caption")
            or _clean(exif.get(_EXIF_DESCRIPTION))
        ),
        title=_clean(iptc.get(_IPTC_TITLE)) or xmp.get("title"),
    )


# --- encoding ----------------------------------------------------------------------------------


def _encode(image: Image.Image, format: str, options: Options, icc: bytes | None) -> bytes:
    out = io.BytesIO()
    params: dict[str, Any] = {}
    if icc and format != "GIF":
        params["icc_profile"] = icc
    if format == "JPEG":
        if image.mode not in ("RGB", "L", "CMYK"):
            image = image.convert("RGB")
        # Progressive for what browsers show; a full-size original as baseline, which
        # encodes ten times faster.
        progressive = image.width <= WIDTHS[-1]
        params.update(quality=options.quality, progressive=progressive, optimize=False)
    elif format == WEBP:
        # method 2 of 0..6: a third faster than the default 4 for files a few % larger.
        params.update(quality=options.quality, method=2)
    elif format == "AVIF":
        params.update(quality=options.quality, speed=8)
    elif format == "PNG":
        params.update(compress_level=6)
    # Every image here descends from `_base`, whose `info` is empty.
    image.save(out, format, **params)
    return out.getvalue()


def _encode_animation(image: Image.Image, format: str, icc: bytes | None) -> bytes:
    """An animation re-saved frame by frame, keeping its timing and nothing else."""
    image.info = {k: v for k, v in image.info.items() if k in ("duration", "loop", "transparency")}
    out = io.BytesIO()
    params: dict[str, Any] = {"save_all": True}
    if format == WEBP:
        params["lossless"] = True
    if icc and format != "GIF":
        params["icc_profile"] = icc
    image.save(out, format, **params)
    return out.getvalue()


def _scaled(image: Image.Image, width: int) -> Image.Image:
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)


def _web_mode(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "L") and "transparency" in image.info:
        # One transparent colour (PNG tRNS) becomes an alpha channel, which survives the
        # `info` every stored file is written without.
        return image.convert("RGBA" if image.mode == "RGB" else "LA")
    if image.mode in ("RGB", "RGBA", "L", "LA"):
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit greyscale (PNG): scaled to 8 bits, where a plain convert clips it to white.
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    has_alpha = image.mode in ("P", "PA") and "transparency" in image.info
    return image.convert("RGBA" if has_alpha or image.mode.endswith("A") else "RGB")


def crop_box(
    width: int, height: int, ratio: tuple[int, int], focal: tuple[float, float]
) -> tuple[int, int, int, int]:
    """The largest box of `ratio` inside the image, centred on the focal point as far as the
    edges allow."""
    rw, rh = ratio
    if width * rh > height * rw:
        box_w, box_h = max(1, round(height * rw / rh)), height
    else:
        box_w, box_h = width, max(1, round(width * rh / rw))
    left = min(max(round(focal[0] * width - box_w / 2), 0), width - box_w)
    top = min(max(round(focal[1] * height - box_h / 2), 0), height - box_h)
    return left, top, left + box_w, top + box_h


def focal_tag(focal: tuple[float, float]) -> str:
    """Part of a crop's name, so a moved focal point gives new keys (files stay immutable)."""
    return f"f{round(focal[0] * 1000):04d}{round(focal[1] * 1000):04d}"


def make_crops(
    base: Image.Image,
    kind: Kind,
    focal: tuple[float, float],
    options: Options,
    icc: bytes | None,
) -> Iterable[Rendition]:
    tag = focal_tag(focal)
    # Cut from a copy just large enough that the widest crop is CROP_WIDTH: scaling a
    # 24-megapixel photo once beats scaling three crops of it.
    narrowest = min(
        crop_box(base.width, base.height, r, focal)[2]
        - crop_box(base.width, base.height, r, focal)[0]
        for r in RATIOS
    )
    if narrowest > CROP_WIDTH:
        base = _scaled(base, math.ceil(base.width * CROP_WIDTH / narrowest))
    for ratio in RATIOS:
        box = crop_box(base.width, base.height, ratio, focal)
        piece = base.crop(box)
        if piece.width > CROP_WIDTH:
            piece = _scaled(piece, CROP_WIDTH)
        name = f"crop-{ratio[0]}x{ratio[1]}-{tag}"
        for format, suffix in _formats(kind):
            data = _encode(piece, format, options, icc)
            yield Rendition(name + suffix, data, piece.width, piece.height, KINDS[format])


def _formats(kind: Kind) -> list[tuple[str, str]]:
    own = next(name for name, k in KINDS.items() if k == kind)
    return [(own, "")] if own == WEBP else [(own, ""), (WEBP, "-webp")]


def _base(image: Image.Image) -> Image.Image:
    """The first frame, upright, in a mode every web format can take, as a new image with
    nothing in its `info` (which would carry EXIF, XMP or comments into some encoders)."""
    image.seek(0)
    # Always a new image (a copy when there is nothing to turn), so the upload's own
    # `info` is left intact for reading.
    upright = ImageOps.exif_transpose(image)
    base = _web_mode(upright)
    base.info = {}
    return base


def process(data: bytes, focal: tuple[float, float], options: Options) -> Processed:
    """Check an upload and make everything stored for it: the full image without metadata,
    the widths in WIDTHS below its own in its format and WebP, and the crops."""
    image, kind = open_checked(data, options.max_pixels)
    with image:
        found = embedded(image)
        icc = image.info.get("icc_profile")
        animated = getattr(image, "n_frames", 1) > 1
        own = next(name for name, k in KINDS.items() if k == kind)
        base = _base(image)
        if not animated:
            # The decoded upload is not needed past this point: freed now, a 24-megapixel
            # photo is held once while its renditions are made, not twice.
            image.close()
        result = Processed(kind=kind, width=base.width, height=base.height, embedded=found)
        full = _encode_animation(image, own, icc) if animated else _encode(base, own, options, icc)
        result.files.append(Rendition("full", full, base.width, base.height, kind))
        if own != WEBP and base.width <= WIDTHS[-1]:
            webp = _encode(base, WEBP, options, icc)
            result.files.append(Rendition("full-webp", webp, base.width, base.height, KINDS[WEBP]))
        source = base
        for width in sorted((w for w in WIDTHS if w < base.width), reverse=True):
            # Each width from the next larger one: the same sharpness for a fraction of the work.
            source = _scaled(source, width)
            for format, suffix in _formats(kind):
                encoded = _encode(source, format, options, icc)
                result.files.append(
                    Rendition(
                        f"w{width}{suffix}", encoded, source.width, source.height, KINDS[format]
                    )
                )
        result.files.extend(make_crops(base, kind, focal, options, icc))
        return result


def recrop(data: bytes, focal: tuple[float, float], options: Options) -> list[Rendition]:
    """New crops of a stored full image for a moved focal point."""
    image, kind = open_checked(data, options.max_pixels)
    with image:
        icc = image.info.get("icc_profile")
        return list(make_crops(_base(image), kind, focal, options, icc))
