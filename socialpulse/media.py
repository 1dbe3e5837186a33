"""The media store: uploaded bytes, streamed to disk, checked by their magic bytes, content addressed.

Files live at ``<root>/<sha[:2]>/<sha>.<ext>`` so a retried upload is stored once. Uploads are streamed
into a temporary file inside the store (same filesystem, so the final rename is atomic), counting bytes
as they come and stopping as soon as the limit is passed: a file is never held whole in memory, and a
rejected or interrupted upload never leaves a file behind.

Serving imports this module: it must not import ``socialpulse.lake`` (deltalake).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from socialpulse.ingest import MediaObject
from socialpulse.settings import Settings

TMP_DIR = ".tmp"
#: bytes needed to recognise every supported format (EBML doc type sits within the first ~40 bytes)
SNIFF_BYTES = 64


class MediaError(ValueError):
    """An upload was refused; the message says why."""


class MediaTooLarge(MediaError):
    pass


class UnsupportedMediaType(MediaError):
    pass


class EmptyMedia(MediaError):
    pass


# (kind, content_type, extension)
_FORMATS = {
    "mp4": ("video", "video/mp4", "mp4"),
    "mov": ("video", "video/quicktime", "mov"),
    "webm": ("video", "video/webm", "webm"),
    "mkv": ("video", "video/x-matroska", "mkv"),
    "jpeg": ("image", "image/jpeg", "jpg"),
    "png": ("image", "image/png", "png"),
    "gif": ("image", "image/gif", "gif"),
    "webp": ("image", "image/webp", "webp"),
}
# ISO base media brands that are still images or audio, not video
_NON_VIDEO_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis", b"M4A ", b"M4B "}


def sniff(head: bytes) -> tuple[str, str, str] | None:
    """``(kind, content_type, extension)`` of a file from its first bytes, or None if unknown."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _NON_VIDEO_BRANDS:
            return None
        return _FORMATS["mov" if brand == b"qt  " else "mp4"]
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _FORMATS["webm" if b"webm" in head[:SNIFF_BYTES] else "mkv"]
    if head.startswith(b"\xff\xd8\xff"):
        return _FORMATS["jpeg"]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _FORMATS["png"]
    if head.startswith((b"GIF87a", b"GIF89a")):
        return _FORMATS["gif"]
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _FORMATS["webp"]
    return None


def media_root(settings: Settings) -> Path:
    return Path(settings.media).expanduser().resolve()


def local_path(uri: str) -> Path:
    """The local file of a ``file://`` media URI."""
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise ValueError(f"not a local media URI: {uri!r}")
    return Path(url2pathname(parts.path))


async def _chunks(upload) -> AsyncIterable[bytes]:
    """Chunks of an async iterable of bytes, or of an object with an async ``read(n)`` (UploadFile)."""
    if hasattr(upload, "__aiter__"):
        async for chunk in upload:
            yield chunk
        return
    while True:
        chunk = await upload.read(1024 * 1024)
        if not chunk:
            return
        yield chunk


async def store_upload(upload_stream, settings: Settings, declared_kind: str) -> MediaObject:
    """Stream an upload into the media store and return where it lives.

    Raises ``MediaTooLarge`` as soon as more than ``settings.max_upload_bytes`` arrive,
    ``UnsupportedMediaType`` when the bytes are not a supported format of ``declared_kind``
    (video: mp4/mov/webm/mkv, image: jpeg/png/gif/webp), ``EmptyMedia`` for an empty upload.
    """
    if declared_kind not in ("video", "image"):
        raise UnsupportedMediaType(f"{declared_kind} posts take no media (only video and image posts do)")
    limit = settings.max_upload_bytes
    root = media_root(settings)
    tmp_dir = root / TMP_DIR
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        head = b""
        fmt: tuple[str, str, str] | None = None
        with os.fdopen(fd, "wb") as fh:
            async for chunk in _chunks(upload_stream):
                if not chunk:
                    continue
                size += len(chunk)
                if size > limit:
                    raise MediaTooLarge(f"upload exceeds the limit of {limit} bytes (SOCIALPULSE_MAX_UPLOAD_BYTES)")
                if fmt is None:
                    head += chunk[: SNIFF_BYTES - len(head)]
                    if len(head) >= SNIFF_BYTES:
                        fmt = _check_format(head, declared_kind)
                digest.update(chunk)
                fh.write(chunk)
            if size == 0:
                raise EmptyMedia("the media file is empty")
            if fmt is None:
                fmt = _check_format(head, declared_kind)
            fh.flush()
            # the stream record will point at this file: make it durable before we say it is stored
            await asyncio.to_thread(os.fsync, fh.fileno())
        _, content_type, ext = fmt
        sha = digest.hexdigest()
        key = f"{sha[:2]}/{sha}.{ext}"
        final = root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp.unlink()  # same bytes already stored: content addressing makes the retry a no-op
        else:
            os.replace(tmp, final)
        return MediaObject(uri=final.as_uri(), key=key, content_type=content_type, size=size, sha256=sha)
    finally:
        # on any error (including a client that disconnects mid-upload) no partial file stays behind
        tmp.unlink(missing_ok=True)


def _check_format(head: bytes, declared_kind: str) -> tuple[str, str, str]:
    fmt = sniff(head)
    if fmt is None:
        raise UnsupportedMediaType(
            f"unrecognised media format (first bytes {head[:12].hex()}); "
            "supported: video mp4/mov/webm/mkv, image jpeg/png/gif/webp"
        )
    if fmt[0] != declared_kind:
        raise UnsupportedMediaType(f"the file is {fmt[1]}, but the post is declared as {declared_kind}")
    return fmt


def probe_writable(settings: Settings) -> None:
    """Write and remove a small file in the store (readiness check); raises OSError if it cannot."""
    tmp_dir = media_root(settings) / TMP_DIR
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="probe-")
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        os.unlink(name)
