"""Test images made in memory with Pillow: small, of every accepted type and some refused
ones, with the metadata (EXIF orientation and GPS, XMP, IPTC) that uploads must shed."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from PIL import Image, ImageDraw, PngImagePlugin

GREY = (128, 128, 128)
RED = (255, 0, 0)
BLUE = (0, 0, 255)

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
ORIENTATION = 0x0112
MAKE = 0x010F
DATE_TIME_ORIGINAL = 0x9003


def picture(width: int, height: int, color: tuple[int, int, int] = GREY) -> Image.Image:
    return Image.new("RGB", (width, height), color)


def encode(image: Image.Image, format: str, **params: Any) -> bytes:
    if isinstance(params.get("exif"), Image.Exif):
        # As bytes: some encoders skip an Exif whose tags are all in sub-IFDs.
        params["exif"] = params["exif"].tobytes()
    if format == "PNG" and "xmp" in params:
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", params.pop("xmp").decode())
        params["pnginfo"] = info
    out = io.BytesIO()
    image.save(out, format, **params)
    return out.getvalue()


def jpeg(width: int = 400, height: int = 300, **params: Any) -> bytes:
    return encode(picture(width, height), "JPEG", quality=80, **params)


def png(width: int = 400, height: int = 300) -> bytes:
    return encode(picture(width, height), "PNG")


def grey16_png(width: int = 400, height: int = 300, value: int = 30_000) -> bytes:
    """A 16-bit greyscale PNG, as scanners and photo tools write them."""
    return encode(Image.new("I;16", (width, height), value), "PNG")


def webp(width: int = 400, height: int = 300) -> bytes:
    return encode(picture(width, height), "WEBP", quality=80)


def avif(width: int = 400, height: int = 300) -> bytes:
    return encode(picture(width, height), "AVIF", quality=60, speed=10)


def bmp(width: int = 40, height: int = 30) -> bytes:
    return encode(picture(width, height), "BMP")


def tiff(width: int = 40, height: int = 30) -> bytes:
    return encode(picture(width, height), "TIFF")


def animated_gif(width: int = 120, height: int = 80, frames: int = 3) -> bytes:
    colours = [RED, BLUE, GREY, (0, 160, 0)]
    images = [picture(width, height, colours[i % len(colours)]) for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)


def with_block(
    width: int, height: int, centre: tuple[int, int], size: int, color: tuple[int, int, int]
) -> Image.Image:
    """A grey image with a square of `color` centred on `centre`."""
    image = picture(width, height)
    x, y = centre
    half = size // 2
    ImageDraw.Draw(image).rectangle((x - half, y - half, x + half, y + half), fill=color)
    return image


def exif(
    *,
    orientation: int | None = None,
    gps: bool = False,
    taken: str | None = None,
) -> Image.Exif:
    found = Image.Exif()
    found[MAKE] = "TestCam"
    if orientation is not None:
        found[ORIENTATION] = orientation
    if taken is not None:
        found.get_ifd(_EXIF_IFD)[DATE_TIME_ORIGINAL] = taken
    if gps:
        position = found.get_ifd(_GPS_IFD)
        position[1] = "N"
        position[2] = (52.0, 22.0, 31.5)
        position[3] = "E"
        position[4] = (4.0, 53.0, 12.25)
    return found


def xmp_packet(*, credit: str, rights: str, caption: str) -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about=""'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"'
        f' photoshop:Credit="{credit}">'
        f'<dc:rights><rdf:Alt><rdf:li xml:lang="x-default">{rights}</rdf:li></rdf:Alt></dc:rights>'
        "<dc:description><rdf:Alt>"
        f'<rdf:li xml:lang="x-default">{caption}</rdf:li>'
        "</rdf:Alt></dc:description>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


def iptc_segment(records: dict[int, str]) -> bytes:
    """A JPEG APP13 segment: "Photoshop 3.0", one 8BIM resource 0x0404 holding IPTC-IIM
    datasets of record 2 (80 by-line, 110 credit, 116 copyright, 120 caption ...)."""
    iim = b"".join(
        b"\x1c\x02" + bytes([dataset]) + struct.pack(">H", len(value.encode())) + value.encode()
        for dataset, value in records.items()
    )
    if len(iim) % 2:
        iim += b"\x00"
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim))
    payload = b"Photoshop 3.0\x00" + resource + iim
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def with_iptc(jpeg_data: bytes, records: dict[int, str]) -> bytes:
    """The JPEG with an IPTC segment right after its SOI marker."""
    assert jpeg_data[:2] == b"\xff\xd8"
    return jpeg_data[:2] + iptc_segment(records) + jpeg_data[2:]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def pixel_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid, small PNG that decodes to `width`×`height` one-bit pixels: a few hundred
    kilobytes on the wire, gigabytes once decoded into RGB."""
    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
