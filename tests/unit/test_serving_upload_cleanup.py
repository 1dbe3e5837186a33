"""Staged uploads (the API stores media before it queues the post): bytes of a post that is not accepted are
removed, but only when a pending upload created them and no upload of the same bytes was accepted, since
files are shared by content."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from socialpulse.media import staged_upload, store_upload
from socialpulse.settings import Settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 200
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x02" * 200


async def body(data: bytes):
    yield data


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", media_uri=str(tmp_path / "media"))


def files(settings: Settings) -> list[Path]:
    """Every file in the store: media, temporary parts and lock files."""
    return sorted(p for p in Path(settings.media).rglob("*") if p.is_file())


def run(coro):
    return asyncio.run(coro)


def test_an_upload_not_kept_is_removed_and_a_kept_one_stays(settings):
    async def scenario():
        async with staged_upload(body(PNG), settings, "image") as staged:
            assert staged.created and staged.path.read_bytes() == PNG
        assert files(settings) == []
        async with staged_upload(body(PNG), settings, "image") as staged:
            assert staged.created  # removed before: stored again
            staged.keep()
        return staged.path

    path = run(scenario())
    assert files(settings) == [path]


def test_bytes_stored_before_are_never_removed(settings):
    async def scenario():
        media = await store_upload(body(PNG), settings, "image")  # an accepted post's file
        async with staged_upload(body(PNG), settings, "image") as staged:
            assert not staged.created  # the same bytes: shared, not created
        return media

    media = run(scenario())
    assert [p.name for p in files(settings)] == [Path(media.key).name]


def test_an_error_in_the_block_removes_what_it_created(settings):
    async def scenario():
        with pytest.raises(RuntimeError):
            async with staged_upload(body(JPEG), settings, "image"):
                raise RuntimeError("queue unreachable")

    run(scenario())
    assert files(settings) == []


@pytest.mark.parametrize("first_out", ["creator", "sharer"])
def test_concurrent_uploads_of_the_same_bytes_remove_them_only_when_none_is_kept(settings, first_out):
    async def scenario():
        uploads = {"creator": staged_upload(body(PNG), settings, "image"),
                   "sharer": staged_upload(body(PNG), settings, "image")}
        creator = await uploads["creator"].__aenter__()
        sharer = await uploads["sharer"].__aenter__()
        assert creator.created and not sharer.created
        last_out = "sharer" if first_out == "creator" else "creator"
        await uploads[first_out].__aexit__(None, None, None)
        assert creator.path.exists()  # the other upload is still pending: it may yet be accepted
        await uploads[last_out].__aexit__(None, None, None)
        assert files(settings) == []  # the last one out, neither kept: gone

    run(scenario())


def test_a_kept_sharer_protects_the_bytes_a_failing_creator_made(settings):
    async def scenario():
        creator_cm = staged_upload(body(PNG), settings, "image")
        creator = await creator_cm.__aenter__()
        async with staged_upload(body(PNG), settings, "image") as sharer:
            # the creator's queue write fails while the sharer is still pending ...
            await creator_cm.__aexit__(None, None, None)
            assert sharer.path.exists()
            sharer.keep()  # ... and the sharer's post is accepted
        return creator.path

    path = run(scenario())
    assert files(settings) == [path] and path.read_bytes() == PNG


def test_a_failing_creator_after_a_kept_sharer_leaves_the_bytes(settings):
    async def scenario():
        async with staged_upload(body(JPEG), settings, "image") as creator:
            async with staged_upload(body(JPEG), settings, "image") as sharer:
                sharer.keep()
        return creator.path

    path = run(scenario())
    assert files(settings) == [path]
