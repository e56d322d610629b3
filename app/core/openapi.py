"""Declared error responses, so the OpenAPI document lists every status a route gives."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from app.core.errors import PROBLEM_MEDIA_TYPE, Problem

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries in problem+json for the given statuses (and 503, which
    any route that touches the database can give)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 503}):
        entry: dict[str, Any] = {
            "description": HTTPStatus(status).phrase,
            "model": Problem,
        }
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        out[status] = entry
    return out


def problem_content(schema: dict[str, Any]) -> None:
    """Rewrite error responses of a generated OpenAPI document to problem+json.

    FastAPI files every declared model under `application/json` and adds its own
    validation-error schema; the API answers every error in one shape, so say so."""
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            answers = operation.setdefault("responses", {})
            # The request guard answers these before any route runs.
            guarded = [408, 413, 415] if "requestBody" in operation else []
            if operation.get("parameters") or guarded:
                guarded.append(422)
            for status in guarded:
                answers.setdefault(str(status), {"description": HTTPStatus(status).phrase})
            for status, response in answers.items():
                if not str(status).isdigit() or int(status) < 400:
                    continue
                response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem_ref}}
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)


def links(status: int, **targets: tuple[str, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI links from a response to the operations its body unlocks:
    `name=(operationId, "param=$response.body#/field")`. Clients and the stateful fuzzer
    follow them (create an article → read it → change it → comment on it → moderate)."""
    out: dict[str, Any] = {}
    for name, (operation_id, binding) in targets.items():
        param, expression = binding.split("=", 1)
        out[name] = {"operationId": operation_id, "parameters": {param: expression}}
    return {status: {"links": out}}


def trimmed_variants(schema: dict[str, Any]) -> None:
    """Document what `fields=` returns: for each operation taking `fields`, its 200 answer is
    the full model or the same model with every property optional (never others)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})

    def trimmed(name: str) -> str:
        variant = f"{name}Trimmed"
        if variant in components:
            return variant
        source = components[name]
        copy = {**source, "required": [], "title": variant}
        components[variant] = copy  # before the nested lists, which may name it again
        properties = dict(source.get("properties", {}))
        for key, prop in properties.items():
            # Lists of models are trimmed at every depth (a page's items, a tree's children).
            if isinstance(prop, dict) and "$ref" in prop.get("items", {}):
                inner = prop["items"]["$ref"].rsplit("/", 1)[1]
                properties[key] = {**prop, "items": {"$ref": _ref(trimmed(inner))}}
        if "items" in properties and name.startswith("Page"):
            copy["required"] = source.get("required", [])  # the envelope is never trimmed
        copy["properties"] = properties
        return variant

    def variants(media_schema: dict[str, Any]) -> dict[str, Any]:
        refs = [
            media_schema.get("$ref"),
            *(one.get("$ref") for one in media_schema.get("anyOf", [])),
        ]
        found = [ref for ref in refs if ref]
        return {
            "anyOf": [
                *({"$ref": ref} for ref in found),
                *({"$ref": _ref(trimmed(ref.rsplit("/", 1)[1]))} for ref in found),
            ]
        }

    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            params = operation.get("parameters", [])
            if not any(p.get("name") == "fields" and p.get("in") == "query" for p in params):
                continue
            content = operation.get("responses", {}).get("200", {}).get("content", {})
            for media in content.values():
                if media.get("schema"):
                    media["schema"] = variants(media["schema"])


def _ref(name: str) -> str:
    return f"#/components/schemas/{name}"
