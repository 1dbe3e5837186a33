"""End to end, the live moderation path: posts uploaded through the API are pending, the ingest sensor's run
lands them in Delta, the moderation sensor sees the new bronze posts and its run scores, decides and
publishes them, and the API serves each decision (a corrupt upload goes to review with its reason). The
content sensor then sees the new decisions and its run makes the allowed posts searchable."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from tests.tokens import bearer

pytestmark = pytest.mark.e2e


def _tick(defs, instance, sensor_name: str, cursor: str | None = None):
    import dagster as dg

    sensor = defs.resolve_sensor_def(sensor_name)
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources, cursor=cursor) as ctx:
        return sensor.evaluate_tick(ctx)


def test_upload_is_moderated_by_the_sensor_path(stack, tmp_path):
    import dagster as dg
    from fastapi.testclient import TestClient

    from bench.moderation import photo
    from orchestration.definitions import defs
    from serving.app import create_app
    from socialpulse.loaders import HATEXPLAIN_SAMPLE, load_hatexplain

    instance = dg.DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster"))
    load_hatexplain(stack, HATEXPLAIN_SAMPLE)
    assert defs.resolve_job_def("text_model_job").execute_in_process(instance=instance).success
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    tag = uuid.uuid4().hex[:8]
    clean, broken, image = f"p-live-clean-{tag}", f"p-live-broken-{tag}", f"p-live-image-{tag}"

    with TestClient(create_app(), headers=bearer(stack, "u-live")) as api:
        def upload(pid, kind, caption, media=None):
            files = {"post": (None, json.dumps({"post_id": pid, "author_id": "u-live", "kind": kind,
                                                 "caption": caption}), "application/json")}
            if media is not None:
                files["media"] = ("upload.jpg", media, "image/jpeg")
            r = api.post("/v1/posts", files=files)
            assert r.status_code == 202, r.text

        upload(clean, "text", "sunset over the lake with my dog")
        upload(image, "image", "holiday photo", photo(3, (320, 320)))
        upload(broken, "image", "this upload is cut short", photo(4)[:700])  # JPEG magic bytes, truncated body
        assert api.get(f"/v1/posts/{clean}/moderation").json() == {"post_id": clean, "status": "pending", "action": None}

        # the moderation sensor has nothing to do until the posts are in bronze
        assert not _tick(defs, instance, "moderation_sensor").run_requests
        drain = _tick(defs, instance, "ingest_sensor")
        assert len(drain.run_requests) == 1
        assert defs.resolve_job_def("bronze_ingest_job").execute_in_process(
            instance=instance, tags=drain.run_requests[0].tags).success

        tick = _tick(defs, instance, "moderation_sensor")
        assert [r.partition_key for r in tick.run_requests] == [today]
        run = defs.resolve_job_def("moderation_job").execute_in_process(
            instance=instance, partition_key=today, tags=tick.run_requests[0].tags)
        assert run.success
        # the cursor moved past those posts: the next tick waits for new ones
        assert not _tick(defs, instance, "moderation_sensor", cursor=tick.cursor).run_requests

        body = api.get(f"/v1/posts/{clean}/moderation").json()
        assert body["status"] == "decided" and body["action"] == "allow", body
        body = api.get(f"/v1/posts/{image}/moderation").json()
        assert body["status"] == "decided" and 0.0 <= body["nsfw"] <= 1.0, body
        body = api.get(f"/v1/posts/{broken}/moderation").json()
        assert body["action"] == "review" and body["review_status"] == "open", body
        assert body["reasons"][0].startswith("media could not be analysed: corrupt_image"), body

        # the new decisions trigger the content run: allowed uploads become searchable, the one in review not
        tick = _tick(defs, instance, "content_sensor")
        assert today in [r.partition_key for r in tick.run_requests]
        request = next(r for r in tick.run_requests if r.partition_key == today)
        assert defs.resolve_job_def("content_job").execute_in_process(
            instance=instance, partition_key=today, tags=request.tags).success
        found = api.get("/v1/search", params={"q": "sunset lake dog"}).json()
        ids = [p["post_id"] for p in found["posts"]]
        assert clean in ids and broken not in ids, found
        similar = api.get(f"/v1/posts/{image}/similar").json()
        assert image not in [p["post_id"] for p in similar["posts"]] and broken not in [p["post_id"] for p in similar["posts"]]
