"""Ingestion: events (JSON batches), posts (a JSON form field plus a streamed media file) and users (JSON).

Accepted records go to the Redis ingest streams (deduplicated by their client id, so a retried request
adds nothing) and media bytes to the media store; the drain lands them in bronze Delta later.

The acting user is the token's: an event's ``user_id``, a post's ``author_id`` and a profile's ``user_id`` may be
left out (the token's user is filled in) and, when given, must be that user (403 otherwise). A record id that
another user already holds is a 409, and nothing of the request is enqueued.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError

from serving.deps import RedisDep, SettingsDep
from serving.errors import ApiError, call_store, validation_error
from serving.multipart import StreamingMultipart
from serving.security import IngestUser, UploadUser
from socialpulse.auth import Principal
from socialpulse.ingest import (
    EventBatch,
    IdConflict,
    MediaObject,
    PostIn,
    UserIn,
    enqueue_events,
    enqueue_post,
    enqueue_user,
)
from socialpulse.media import staged_upload

router = APIRouter(prefix="/v1", tags=["ingest"])

#: generous upper bound of one event's JSON (a 2,000-character comment escaped, ids, timestamps)
EVENT_JSON_BUDGET = 16 * 1024
#: the ``post`` form field is small (caption <= 2,200 characters, <= 30 hashtags)
POST_FIELD_LIMIT = 64 * 1024
#: multipart framing besides the file: the post field, part headers, boundaries
FORM_OVERHEAD = POST_FIELD_LIMIT + 16 * 1024


def _inline_schema(model: type[BaseModel], caller_field: str | None = None) -> dict:
    """The JSON schema of a model with its ``$defs`` inlined (it is embedded in the OpenAPI document);
    ``caller_field`` (the user the token names) is documented as optional."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            node = {k: inline(v) for k, v in node.items()}
            if caller_field and caller_field in node.get("properties", {}):
                node["required"] = [f for f in node.get("required", []) if f != caller_field]
                node["properties"][caller_field] = {**node["properties"][caller_field], "description":
                                                    "the token's user (leave it out; another user is a 403)"}
            return node
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int


class MediaAccepted(BaseModel):
    """What a client needs to know of its stored media (never where or how the server keeps it)."""

    content_type: str
    size: int
    sha256: str

    @classmethod
    def of(cls, media: MediaObject) -> "MediaAccepted":
        return cls(content_type=media.content_type, size=media.size, sha256=media.sha256)


class UserAccepted(BaseModel):
    user_id: str
    duplicate: bool


class PostAccepted(BaseModel):
    post_id: str
    media: MediaAccepted | None
    duplicate: bool


#: how ingest names the Redis streams it enqueues on, when they cannot be reached
INGEST_QUEUE = "ingest queue"
UNAVAILABLE = {503: {"description": "the ingest queue is unreachable (nothing was accepted; retry after Retry-After)"}}
AUTH = {401: {"description": "no valid bearer token"}, 403: {"description": "a record names another user than the token's"},
        409: {"description": "a record id is already another user's (nothing was accepted)"},
        429: {"description": "rate limit exceeded (see Retry-After)"}}


def as_caller(record, field: str, principal: Principal, where: str):
    """Fill ``record[field]`` with the token's user, or refuse (403) a record that names another user."""
    if not isinstance(record, dict):
        return record
    given = record.get(field)
    if given is None:
        record[field] = principal.user_id
    elif given != principal.user_id:
        raise ApiError(403, f"{where}.{field} is {given!r} but the token is user {principal.user_id!r}: a client acts "
                            "only as its own user (leave the field out)", field=f"{where}.{field}")
    return record


async def enqueue_owned(fn, *args):
    """An enqueue whose ids another user already holds is a 409 (nothing of the request was enqueued)."""
    try:
        return await call_store(INGEST_QUEUE, fn, *args)
    except IdConflict as exc:
        raise ApiError(409, f"id(s) already taken by another user: {', '.join(exc.ids[:20])}; choose new ids",
                       ids=exc.ids[:100]) from None


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise ApiError(400, f"invalid Content-Length header {value!r}") from None


async def _read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refusing more than ``limit`` bytes (up front when Content-Length says so)."""
    length = _content_length(request)
    if length is not None and length > limit:
        raise ApiError(413, f"{what} of {length} bytes exceeds the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"{what} exceeds the limit of {limit} bytes")
    return bytes(body)


def _no_constants(name: str):
    raise ValueError(f"{name} is not a valid JSON number")


def _parse_json(raw: bytes | str, what: str):
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"{what} is not valid JSON: {exc}") from None


def _require_content_type(request: Request, *accepted: str) -> str:
    ctype = request.headers.get("content-type", "")
    base = ctype.split(";", 1)[0].strip().lower()
    if base not in accepted and not (("application/json" in accepted) and base.endswith("+json")):
        raise ApiError(415, f"expected Content-Type {' or '.join(accepted)}, got {base or 'none'}")
    return ctype


@router.post(
    "/events",
    status_code=202,
    response_model=EventsAccepted,
    summary="Ingest a batch of interaction events",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_schema(EventBatch, "user_id"), "example": {"events": [
                {"event_id": "e-1001", "event_type": "view", "post_id": "p-7", "watch_time_s": 12.5},
                {"event_id": "e-1002", "event_type": "comment", "post_id": "p-7", "text": "so good"},
                {"event_id": "e-1003", "event_type": "follow", "target_user_id": "u-9"},
            ]}}},
        }
    },
    responses={413: {"description": "too many events or too large a body"}, 422: {"description": "invalid events"},
               **AUTH, **UNAVAILABLE},
)
async def post_events(request: Request, settings: SettingsDep, redis: RedisDep, principal: IngestUser) -> EventsAccepted:
    """Validate every event (all or nothing), then enqueue the new ones; retried ids count as duplicates. Every
    event is the token user's (``user_id`` may be left out)."""
    _require_content_type(request, "application/json")
    limit = settings.max_event_batch
    body = await _read_body(request, max(1024 * 1024, limit * EVENT_JSON_BUDGET), "event batch")
    data = _parse_json(body, "request body")
    events = data.get("events") if isinstance(data, dict) else None
    if isinstance(events, list) and len(events) > limit:
        raise ApiError(
            413, f"batch of {len(events)} events exceeds the limit of {limit} per request (SOCIALPULSE_MAX_EVENT_BATCH)"
        )
    if isinstance(events, list):
        for i, event in enumerate(events):
            as_caller(event, "user_id", principal, f"events[{i}]")
    try:
        batch = EventBatch.model_validate(data, context={"max_events": limit})
    except ValidationError as exc:
        raise validation_error(exc.errors(), ("body",)) from None
    accepted, duplicates = await enqueue_owned(enqueue_events, redis, batch.events, settings.ingest_dedupe_ttl_s)
    return EventsAccepted(accepted=accepted, duplicates=duplicates)


#: a user's JSON is small (ids, handle, country, language, birth year)
USER_JSON_LIMIT = 16 * 1024


@router.post(
    "/users",
    status_code=202,
    response_model=UserAccepted,
    summary="Sign up a user or change a profile (the latest change per user_id wins)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_schema(UserIn, "user_id"), "example": {
                "handle": "maya", "country": "US", "language": "en", "birth_year": 2004}}},
        }
    },
    responses={413: {"description": "too large a body"}, 422: {"description": "invalid user fields"}, **AUTH,
               **UNAVAILABLE},
)
async def post_users(request: Request, settings: SettingsDep, redis: RedisDep, principal: IngestUser) -> UserAccepted:
    """Validate the token user's profile (birth_year optional, from 1900 to this year minus 13), then enqueue it; a
    retry of the same change (same created_at) is answered as a duplicate."""
    _require_content_type(request, "application/json")
    data = as_caller(_parse_json(await _read_body(request, USER_JSON_LIMIT, "user"), "request body"), "user_id",
                     principal, "body")
    try:
        user = UserIn.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(), ("body",)) from None
    queued = await enqueue_owned(enqueue_user, redis, user, settings.ingest_dedupe_ttl_s)
    return UserAccepted(user_id=user.user_id, duplicate=not queued)


@router.post(
    "/posts",
    status_code=202,
    response_model=PostAccepted,
    summary="Create a post: form field `post` (JSON) and, for video/image posts, a `media` file",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["post"],
                        "properties": {
                            "post": {"type": "string", "description": "JSON of PostIn (author_id: the token's "
                                                                      "user, left out); must come before media",
                                     "example": '{"post_id": "p-8", "kind": "text", '
                                                '"caption": "sunset over the lake #sunset"}'},
                            "media": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        }
    },
    responses={
        400: {"description": "empty media or malformed multipart body"},
        413: {"description": "media larger than the upload limit"},
        415: {"description": "media of an unsupported or mismatched type"},
        422: {"description": "invalid post fields"},
        **AUTH,
        **UNAVAILABLE,
    },
)
async def post_posts(request: Request, settings: SettingsDep, redis: RedisDep, principal: UploadUser) -> PostAccepted:
    """Validate the post first, then stream its media into the media store, then enqueue the post (the token
    user is its author; ``author_id`` may be left out)."""
    ctype = _require_content_type(request, "multipart/form-data")
    length = _content_length(request)
    limit = settings.max_upload_bytes
    if length is not None and length > limit + FORM_OVERHEAD:
        raise ApiError(413, f"request of {length} bytes exceeds the upload limit of {limit} bytes (SOCIALPULSE_MAX_UPLOAD_BYTES)")
    form = StreamingMultipart(ctype, request.stream())

    part = await form.next_part()
    if part is None or part.name != "post":
        found = "nothing" if part is None else f"'{part.name}'"
        raise ApiError(422, f"the first form field must be 'post' (JSON of the post), found {found}",
                       detail=[{"loc": ["body", "post"], "msg": "field required before any other field"}])
    try:
        raw = await form.read(POST_FIELD_LIMIT)
    except OverflowError:
        raise ApiError(413, f"form field 'post' exceeds {POST_FIELD_LIMIT} bytes") from None
    data = as_caller(_parse_json(raw, "form field 'post'"), "author_id", principal, "post")
    try:
        post = PostIn.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(), ("body", "post")) from None

    part = await form.next_part()
    if part is not None and part.name != "media":
        raise ApiError(422, f"unexpected form field '{part.name}' (expected 'media')",
                       detail=[{"loc": ["body", part.name], "msg": "unexpected field"}])
    ttl = settings.ingest_dedupe_ttl_s
    if part is None:
        if post.kind in ("video", "image"):
            raise ApiError(422, f"a {post.kind} post requires a 'media' file",
                           detail=[{"loc": ["body", "media"], "msg": f"required for {post.kind} posts"}])
        accepted = await enqueue_owned(enqueue_post, redis, post, None, ttl)
        return PostAccepted(post_id=post.post_id, media=None, duplicate=not accepted)
    if post.kind == "text":
        raise ApiError(422, "text posts take no 'media' file",
                       detail=[{"loc": ["body", "media"], "msg": "not allowed for text posts"}])
    # the bytes are stored before the post is queued; until the queue is known to be reachable nothing
    # refers to them, so a refusal or an unreachable queue removes what this request stored (never bytes
    # that another post shares)
    async with staged_upload(form.iter_data(), settings, post.kind) as staged:
        extra = await form.next_part()
        if extra is not None:
            raise ApiError(422, f"unexpected form field '{extra.name}' after 'media'",
                           detail=[{"loc": ["body", extra.name], "msg": "unexpected field"}])
        await call_store(INGEST_QUEUE, redis.ping)
        # from here the post may reach the queue even if its answer is lost (Redis fails mid-reply, the
        # client's retry is then a duplicate): its bytes stay whatever the outcome
        staged.keep()
        accepted = await enqueue_owned(enqueue_post, redis, post, staged.media, ttl)
    return PostAccepted(post_id=post.post_id, media=MediaAccepted.of(staged.media), duplicate=not accepted)
