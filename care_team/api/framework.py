"""How this API uses Django REST framework: parsing, paging, permissions, errors, audit."""

import contextlib

from auditlog.context import auditlog_value
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from rest_framework import serializers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from patients.access import admin_organization_ids, is_member


class StrictCharField(serializers.CharField):
    """A string, and only a string. DRF's CharField turns 123 into "123": a number sent as
    a message's text or as a Telegram chat id would be taken as one, where the sender
    most likely sent the wrong field."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    """Model text fields read with StrictCharField."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
    }


class StrictJSONParser(JSONParser):
    """JSON that PostgreSQL can store: a NUL character or an unpaired surrogate in any
    string would fail deep in the database driver (a 500), so it is refused here."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply.") from exc
        if problem := _unstorable(data):
            raise ParseError(f"JSON parse error - {problem}")
        return data


class StrictMultiPartParser(MultiPartParser):
    """multipart/form-data (a message with an attachment), with the JSON parser's check of
    the text fields."""

    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        if problem := _unstorable(dict(parsed.data.lists())):
            raise ParseError(f"Multipart form parse error - {problem}")
        return parsed


def _unstorable(data) -> str | None:
    pending = [data]  # a loop, not recursion: the parser accepts deeper nesting than we'd walk
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            if "\x00" in value:
                return "strings may not contain NUL characters."
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "strings may not contain unpaired surrogates."
    return None


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class MembersWrite(BasePermission):
    """Reading needs a login; changing anything needs a membership (admin or staff) or
    superuser rights. Objects are already limited to the user's organizations."""

    message = "You are not a member of any organization."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or is_member(request.user)


class AdminsDelete(BasePermission):
    """Deleting (patients, templates) is for the organization's admins."""

    message = "Only an admin of the organization may delete this."

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method != "DELETE":
            return True
        allowed = admin_organization_ids(request.user)
        return allowed is None or obj.organization_id in allowed


def exception_handler(exc, context):
    """A Django ValidationError raised by a service is a 400 naming the field, not a 500."""
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(as_serializer_error(exc))
    return drf_exception_handler(exc, context)


class AuditActorMixin:
    """auditlog's middleware runs before DRF reads the token, so it saw no user: name the
    actor in the audit context it opened for this request, once DRF knows who it is."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.user.is_authenticated:
            with contextlib.suppress(LookupError):  # no middleware (e.g. a bare test view)
                auditlog_value.get()["actor"] = request.user


ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
FIELD_ERRORS = {
    "type": "object",
    "description": "Each field named (or non_field_errors), with a list of reasons; a nested "
    "list (contacts) has one such object per item.",
    "additionalProperties": {},
}


def document_errors(result, generator, request, public):
    """drf-spectacular documents the success answers; this adds the errors every operation
    can give: 401 without a valid token, 403 for a write without the role, 404 for an id
    not found (or in another organization), 400 for input that fails validation."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.update({"Error": ERROR, "FieldErrors": FIELD_ERRORS})
    error = {"$ref": "#/components/schemas/Error"}
    field_errors = {"$ref": "#/components/schemas/FieldErrors"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            answers = operation.setdefault("responses", {})
            wanted = {}
            if operation.get("security"):
                wanted["401"] = ("No valid token or session.", error)
            if method in ("post", "put", "patch", "delete") and operation.get("security"):
                wanted["403"] = ("Not allowed: no membership, or not an admin.", error)
            if "{id}" in path:
                wanted["404"] = ("Not found, or in another organization.", error)
            if any(p.get("name") == "page" for p in operation.get("parameters", [])):
                wanted["404"] = ("No such page.", error)
            if "requestBody" in operation or any(
                p.get("in") == "query" for p in operation.get("parameters", [])
            ):
                wanted["400"] = ("Invalid input.", field_errors)
            if "requestBody" in operation:
                wanted["415"] = ("The body must be application/json.", error)
            if "400" in answers:  # documented by the view (send-now, bulk)
                wanted.setdefault("400", ("Invalid input.", field_errors))
                body = answers["400"].get("content", {}).get("application/json", {})
                if "schema" in body:  # bulk's per-item errors; a malformed envelope is not
                    body["schema"] = {"anyOf": [body["schema"], field_errors]}
            for status, (description, schema) in wanted.items():
                documented = answers.get(status, {})
                if "content" not in documented:
                    answers[status] = {
                        "description": documented.get("description") or description,
                        "content": {"application/json": {"schema": schema}},
                    }
    return result
