"""Media store: magic-byte sniffing, the streamed size limit, content addressing, no leftovers."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from socialpulse.media import EmptyMedia, MediaTooLarge, UnsupportedMediaType, local_path, sniff, store_upload
from socialpulse.settings import Settings

MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 100
MOV = b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00" + b"\x00" * 50
WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm" + b"\x00" * 50
MKV = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x88matroska" + b"\x00" * 50
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 80
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 80
GIF = b"GIF89a" + b"\x00" * 80
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 80
HEIC = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 80


@pytest.mark.parametrize(
    "data, expected",
    [
        (MP4, ("video", "video/mp4", "mp4")),
        (MOV, ("video", "video/quicktime", "mov")),
        (WEBM, ("video", "video/webm", "webm")),
        (MKV, ("video", "video/x-matroska", "mkv")),
        (JPEG, ("image", "image/jpeg", "jpg")),
        (PNG, ("image", "image/png", "png")),
        (GIF, ("image", "image/gif", "gif")),
        (WEBP, ("image", "image/webp", "webp")),
        (HEIC, None),
        (b"%PDF-1.7\n" + b"\x00" * 50, None),
        (b"hello", None),
    ],
)
def test_sniff(data, expected):
    assert sniff(data[:64]) == expected


def settings_for(tmp_path, limit=1000) -> Settings:
    return Settings(home=tmp_path / "home", media_uri=str(tmp_path / "media"), max_upload_bytes=limit)


async def chunked(data: bytes, size: int = 7):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def store(data, settings, kind, size=7):
    return asyncio.run(store_upload(chunked(data, size), settings, kind))


def leftovers(settings) -> list:
    tmp = Path(settings.media) / ".tmp"
    return list(tmp.iterdir()) if tmp.exists() else []


def test_store_is_content_addressed(tmp_path):
    s = settings_for(tmp_path)
    obj = store(MP4, s, "video")
    sha = hashlib.sha256(MP4).hexdigest()
    assert obj.sha256 == sha and obj.size == len(MP4) and obj.content_type == "video/mp4"
    assert obj.key == f"{sha[:2]}/{sha}.mp4"
    assert local_path(obj.uri).read_bytes() == MP4
    again = store(MP4, s, "video", size=1)  # a retried upload, chunked differently: stored once
    assert again == obj
    files = [p for p in (tmp_path / "media").rglob("*") if p.is_file()]
    assert files == [local_path(obj.uri)]
    assert leftovers(s) == []


def test_size_limit_stops_the_stream(tmp_path):
    s = settings_for(tmp_path, limit=len(MP4))
    assert store(MP4, s, "video").size == len(MP4)  # exactly at the limit is fine
    consumed = []

    async def endless():
        yield MP4
        while True:
            consumed.append(1)
            yield b"\x00" * 1024

    with pytest.raises(MediaTooLarge, match=f"exceeds the limit of {len(MP4)} bytes"):
        asyncio.run(store_upload(endless(), s, "video"))
    assert len(consumed) == 1  # stopped on the first chunk past the limit
    assert leftovers(s) == []


def test_wrong_or_unknown_type_and_empty(tmp_path):
    s = settings_for(tmp_path)
    with pytest.raises(UnsupportedMediaType, match="the file is image/png, but the post is declared as video"):
        store(PNG, s, "video")
    with pytest.raises(UnsupportedMediaType, match="the file is video/mp4, but the post is declared as image"):
        store(MP4, s, "image")
    with pytest.raises(UnsupportedMediaType, match="unrecognised media format"):
        store(b"just some text, not media at all" * 3, s, "image")
    with pytest.raises(UnsupportedMediaType, match="unrecognised media format"):
        store(b"GIF8", s, "image")  # too short to be a GIF
    with pytest.raises(UnsupportedMediaType, match="text posts take no media"):
        store(PNG, s, "text")
    with pytest.raises(EmptyMedia, match="empty"):
        store(b"", s, "image")
    assert leftovers(s) == []
    assert not [p for p in (tmp_path / "media").rglob("*") if p.is_file()]


def test_reads_upload_objects(tmp_path):
    class Upload:  # UploadFile-like: async read(n)
        def __init__(self, data):
            self.data = data

        async def read(self, n):
            out, self.data = self.data[:n], self.data[n:]
            return out

    obj = asyncio.run(store_upload(Upload(JPEG), settings_for(tmp_path), "image"))
    assert obj.content_type == "image/jpeg" and obj.key.endswith(".jpg")
