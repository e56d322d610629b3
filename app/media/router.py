"""The media library over HTTP, and the files of the embedded default's local storage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, Security
from fastapi import status as http
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse

from app.cache import keys
from app.core.config import Settings, app_settings
from app.core.db import SessionDep
from app.core.errors import DomainError, InvalidInput, NotFound
from app.core.http_cache import IfMatch, check_if_match
from app.core.openapi import responses
from app.core.pagination import Page, PageParams, page_params, set_page_headers
from app.core.problems import title_of
from app.core.render import FieldsParam, json, parse_fields
from app.core.schemas import MAX_ID, IdPath
from app.core.security import OptionalPrincipal, Principal, current_principal
from app.media import service, views
from app.media.images import KINDS, MIME_TYPES
from app.media.models import Media
from app.media.schemas import MediaPublic, MediaUpdate, MediaUpload
from app.media.storage import IMMUTABLE, LocalStorage

router = APIRouter(prefix="/api/v1/media", tags=["media"])
files = APIRouter(tags=["media"])

Uploader = Annotated[Principal, Security(current_principal, scopes=["media:write"])]
LibraryDep = Annotated[service.Library, Depends(service.library)]
SettingsDep = Annotated[Settings, Depends(app_settings)]


class NotAForm(DomainError):
    status = 415
    type = "unsupported-media-type"
    title = title_of(type, status)


class UploadTooLarge(DomainError):
    status = 413
    type = "payload-too-large"
    title = title_of(type, status)


def _one(
    media: Media,
    settings: Settings,
    *,
    fields: set[str] | None = None,
    status_code: int = http.HTTP_200_OK,
    headers: dict[str, str] | None = None,
) -> Response:
    response = json(
        views.public(media, settings),
        fields=fields,
        status_code=status_code,
        headers=headers,
        version=media.version,
    )
    return keys.label(response, [keys.media(media.id)])


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "JPEG, PNG, WebP or GIF (AVIF where the server "
                            "reads it).",
                        },
                        **MediaUpload.model_json_schema()["properties"],
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    response_model=MediaPublic,
    status_code=http.HTTP_201_CREATED,
    responses=responses(401, 403, 413, 415, 422),
    summary="Upload an image",
    openapi_extra=UPLOAD_BODY,
)
async def upload(
    request: Request,
    session: SessionDep,
    principal: Uploader,
    lib: LibraryDep,
    settings: SettingsDep,
) -> Response:
    """A multipart form: the image in `file`, the rest as fields. The type is told from the
    content, never from the name or the declared type; EXIF, XMP and IPTC metadata (GPS
    position included) are removed from every stored file, after the orientation is
    applied. Without `credit`, `copyright` or `caption`, the file's own IPTC/XMP values are
    used. Every rendition is made before the answer: `sizes` is complete at once."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise NotAForm(
            "Upload as multipart/form-data: the image in `file`, and alt_text, caption, "
            "credit and the other fields beside it. Change them later with a JSON PATCH."
        )
    # Read here, after the token was checked, not as parameters FastAPI would parse first.
    form = await request.form(max_files=1, max_fields=len(MediaUpload.model_fields))
    fields = {name: value for name, value in form.multi_items() if name != "file"}
    try:
        meta = MediaUpload.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise InvalidInput("An image file is required in the form field `file`.", field="file")
    data = await file.read(settings.media_max_bytes + 1)
    if len(data) > settings.media_max_bytes:
        raise UploadTooLarge(
            f"Uploads are limited to {settings.media_max_bytes} bytes.", field="file"
        )
    upload = service.Upload(data=data, filename=file.filename, **meta.model_dump())
    media = await service.create(session, lib, upload, uploader_id=principal.user.id)
    try:
        await session.commit()
    except BaseException:
        await lib.discard(service.file_keys(media))
        raise
    location = {"Location": f"/api/v1/media/{media.id}"}
    return _one(media, settings, status_code=http.HTTP_201_CREATED, headers=location)


@router.get(
    "",
    response_model=Page[MediaPublic],
    responses=responses(401, 422),
    summary="List media",
)
async def list_media(
    request: Request,
    response: Response,
    session: SessionDep,
    principal: OptionalPrincipal,
    settings: SettingsDep,
    params: Annotated[PageParams, Depends(page_params)],
    uploader: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Uploader's id.")] = None,
    type: Annotated[
        str | None, Query(description=f"One MIME type: {', '.join(MIME_TYPES)}.")
    ] = None,
    q: Annotated[
        str | None,
        Query(max_length=100, description="In the title, caption, credit or alt text."),
    ] = None,
    after: Annotated[
        AwareDatetime | None, Query(description="Uploaded after this instant (ISO 8601).")
    ] = None,
    before: Annotated[
        AwareDatetime | None, Query(description="Uploaded before this instant (ISO 8601).")
    ] = None,
    fields: FieldsParam = None,
) -> Response:
    """Newest first. The newsroom (any token that reads articles) sees the whole library;
    without one, only images that public articles show."""
    wanted = parse_fields(fields, MediaPublic)
    if type is not None and type not in MIME_TYPES:
        raise InvalidInput(
            f"type must be one of {', '.join(MIME_TYPES)}.", field="type", location="query"
        )
    query = service.MediaQuery(uploader=uploader, mime_type=type, q=q, after=after, before=before)
    public_only = principal is None or not principal.can("articles:read")
    rows, total = await service.list_page(
        session, query, public_only=public_only, offset=params.offset, limit=params.per_page
    )
    set_page_headers(request, response, total=total, params=params)
    listing = Page[MediaPublic].of([views.public(m, settings) for m in rows], total, params)
    return json(listing, fields=wanted, list_fields=True, headers=dict(response.headers))


@router.get(
    "/{media_id}",
    response_model=MediaPublic,
    responses=responses(401, 404, 422),
    summary="Read a media item",
)
async def read_media(
    session: SessionDep,
    principal: OptionalPrincipal,
    settings: SettingsDep,
    media_id: IdPath,
    fields: FieldsParam = None,
) -> Response:
    """Anyone may read an image that a public article shows; the newsroom, every image. The
    ETag goes in `If-Match` of a later `PATCH` or `DELETE`."""
    media = await service.readable(session, media_id, principal)
    return _one(media, settings, fields=parse_fields(fields, MediaPublic))


async def _writable(session: SessionDep, principal: Uploader, media_id: IdPath) -> Media:
    media = await service.get(session, media_id)
    service.ensure_writable(media, principal)
    return media


WritableMedia = Annotated[Media, Depends(_writable)]


@router.patch(
    "/{media_id}",
    response_model=MediaPublic,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Change a media item",
)
async def update_media(
    session: SessionDep,
    lib: LibraryDep,
    settings: SettingsDep,
    media: WritableMedia,
    data: MediaUpdate,
    if_match: IfMatch = None,
) -> Response:
    """Only the fields sent change (authors: their own uploads; editors: any). A new focal
    point makes new crops, under new addresses. Alt text cannot be emptied while a published
    article shows the image."""
    check_if_match(if_match, media.version)
    replaced = await service.update(session, lib, media, data)
    await session.commit()
    await lib.discard(replaced)
    return _one(media, settings)


@router.delete(
    "/{media_id}",
    status_code=http.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Delete a media item",
)
async def delete_media(
    session: SessionDep,
    principal: Uploader,
    lib: LibraryDep,
    media: WritableMedia,
    force: Annotated[
        bool,
        Query(description="Editors: delete even while published articles show it."),
    ] = False,
    if_match: IfMatch = None,
) -> Response:
    """Refused (409) while a published or scheduled article shows the image, unless an
    editor sends `force=true`: those articles then have no featured image. Its files are
    removed with it."""
    check_if_match(if_match, media.version)
    stored = await service.remove(session, lib, media, principal, force=force)
    await session.commit()
    await lib.discard(stored)
    return Response(status_code=http.HTTP_204_NO_CONTENT)


_BY_EXTENSION = {kind.ext: kind.mime for kind in KINDS.values()}


@files.get(
    "/media/{key:path}",
    response_class=FileResponse,
    responses={404: {"description": "No such file"}},
    summary="A stored image file (local storage)",
    include_in_schema=False,
)
async def media_file(key: str, lib: LibraryDep) -> Response:
    """The embedded default's files. Their addresses change whenever their bytes would, so
    they are cached for a year, as immutable."""
    storage = lib.storage
    if not isinstance(storage, LocalStorage):
        raise NotFound("No such file.")
    try:
        path = storage.path(key)  # refuses what is not a storage key ("..", "/x", …)
    except ValueError:
        raise NotFound("No such file.") from None
    if not path.is_file():
        raise NotFound("No such file.")
    kind = _BY_EXTENSION.get(path.suffix.lstrip("."), "application/octet-stream")
    return FileResponse(
        path,
        media_type=kind,
        headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"},
    )
