"""The media store: uploaded bytes, streamed to disk, checked by their magic bytes, content addressed.

Files live at ``<root>/<sha[:2]>/<sha>.<ext>`` so a retried upload is stored once. Uploads are streamed
into a temporary file inside the store (same filesystem, so the final rename is atomic), counting bytes
as they come and stopping as soon as the limit is passed: a file is never held whole in memory, and a
rejected or interrupted upload never leaves a file behind.

An upload is stored before its record is accepted (the API enqueues the post after the bytes are
durable). ``staged_upload`` covers the gap: when the record is not kept (the queue is unreachable, a later
form field is wrong), the file is removed again, but only if an upload still pending created it. Because files are shared by content, a file that existed before, or that another
upload of the same bytes got accepted with, is never removed. Uploads of the same bytes coordinate
through a lock file per sha256 (``<root>/.locks``, flock: across threads and processes): each holds it
shared while pending; the last one out takes it exclusively and settles the file.

Serving imports this module: it must not import ``socialpulse.lake`` (deltalake).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from socialpulse.ingest import MediaObject
from socialpulse.settings import Settings

TMP_DIR = ".tmp"
LOCK_DIR = ".locks"
#: content of a lock file while its media file was created by uploads none of which is accepted yet
_PENDING = b"pending"
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


class StagedMedia:
    """An upload in the media store whose record is not accepted yet (see ``staged_upload``)."""

    def __init__(self, media: MediaObject, path: Path, lock_path: Path, lock_fd: int, created: bool):
        self.media = media
        self.path = path
        #: whether this upload put the file in the store (False: the same bytes were there already)
        self.created = created
        self._lock_path = lock_path
        self._fd: int | None = lock_fd

    def keep(self) -> None:
        """A record refers to the file now (or may: its enqueue was sent): it stays, whatever happens to
        other uploads of the same bytes."""
        os.ftruncate(self._fd, 0)

    def release(self) -> None:
        """Let go; the last pending upload of these bytes removes the file unless one of them was kept."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another upload of these bytes is pending: the last one out settles the file
            if _same_file(self._lock_path, fd):
                if os.pread(fd, len(_PENDING), 0) == _PENDING:
                    self.path.unlink(missing_ok=True)
                self._lock_path.unlink()
        finally:
            os.close(fd)


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _place(tmp: Path, final: Path, lock_path: Path) -> tuple[int, bool]:
    """Move a received upload to its content address, holding the sha's lock shared; returns the lock's
    fd and whether this upload created the file."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a last upload out settles this sha
        if _same_file(lock_path, fd):
            break
        os.close(fd)  # that upload removed this lock file after we opened it: take the current one
    try:
        if final.exists():
            tmp.unlink()  # same bytes already stored: content addressing makes the retry a no-op
            return fd, False
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        os.pwrite(fd, _PENDING, 0)
        return fd, True
    except BaseException:
        os.close(fd)
        raise


async def _stage(upload_stream, settings: Settings, declared_kind: str) -> StagedMedia:
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
        lock_path = root / LOCK_DIR / f"{sha}.lock"
        lock_fd, created = await asyncio.to_thread(_place, tmp, final, lock_path)
        media = MediaObject(uri=final.as_uri(), key=key, content_type=content_type, size=size, sha256=sha)
        return StagedMedia(media, final, lock_path, lock_fd, created)
    finally:
        # on any error (including a client that disconnects mid-upload) no partial file stays behind
        tmp.unlink(missing_ok=True)


@asynccontextmanager
async def staged_upload(upload_stream, settings: Settings, declared_kind: str) -> AsyncIterator[StagedMedia]:
    """Stream an upload into the media store for a record about to be accepted; call ``keep()`` on the
    staged media once the record may refer to it. On leaving the block without ``keep()`` the file is
    removed if this upload (or another one still pending) created it and no upload of the same bytes was
    kept.

    Raises like ``store_upload`` before the block is entered.
    """
    staged = await _stage(upload_stream, settings, declared_kind)
    try:
        yield staged
    finally:
        staged.release()


async def store_upload(upload_stream, settings: Settings, declared_kind: str) -> MediaObject:
    """Stream an upload into the media store and return where it lives (kept at once).

    Raises ``MediaTooLarge`` as soon as more than ``settings.max_upload_bytes`` arrive,
    ``UnsupportedMediaType`` when the bytes are not a supported format of ``declared_kind``
    (video: mp4/mov/webm/mkv, image: jpeg/png/gif/webp), ``EmptyMedia`` for an empty upload.
    """
    async with staged_upload(upload_stream, settings, declared_kind) as staged:
        staged.keep()
        return staged.media


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
