"""Schemathesis over the API's OpenAPI document, against the real app (in process, over ASGI) on the real
stores: no generated request, valid or not, may get a 5xx.

The app reads its own database and Redis database on the session ``stack``, with the served tables
created and a few rows in them (the publish modules' DDL), so the fuzzer exercises real reads rather than
"not built yet" answers. Bounded: ``FUZZ_EXAMPLES`` examples per operation, a fixed seed (the same cases
every run; set SOCIALPULSE_FUZZ_EXAMPLES to search harder).
"""

from __future__ import annotations

import datetime as dt
import os

import psycopg
import pyarrow as pa
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from serving.app import create_app
from socialpulse import captions, metrics, moderation, trends_store, vectors, virality
from socialpulse.stores.postgres import bootstrap_database
from tests.tokens import bearer

pytestmark = pytest.mark.integration

FUZZ_EXAMPLES = int(os.environ.get("SOCIALPULSE_FUZZ_EXAMPLES", "100"))
#: a Redis database of the stack no other test uses
FUZZ_REDIS_DB = 13


def _seed(settings, encoder) -> None:
    """Served tables with a few rows: two indexed posts, their directory, a trend and co-occurrences."""
    day = dt.date.today()
    with psycopg.connect(settings.postgres) as conn:
        moderation.ensure_tables(conn)
        records = []
        for pid, text, tags in (("fz1", "street food market at night", ["food", "night"]),
                                ("fz2", "river flood in the old town", ["flood"])):
            meta = {"post_id": pid, "author_id": f"a-{pid}", "author_handle": f"h{pid}", "hashtags": tags,
                    "day": day.isoformat(), "created_at": f"{day}T10:00:00+00:00", "language": "en",
                    "action": "allow", "content_hash": pid, "embedding_version": encoder.version}
            records.append((pid, meta, text, encoder.encode(text)))
        vectors.sync_day(conn, settings.postgres, day.isoformat(), records)
        vectors.refresh_directory(conn)
        hour = dt.datetime.combine(day, dt.time(10), dt.timezone.utc)
        trends_store.publish_scores(conn, day, [{
            "tag": "flood", "hour": hour, "effective": 12, "posts": 12, "removed": 0, "baseline": 1.5, "score": 6.0,
            "flagged": True, "views": 100, "likes": 10, "shares": 3, "comments": 2}])
        trends_store.publish_topics(conn, day, [{
            "topic_id": "t-flood", "label": "flood", "headline": "river flood in the old town", "tags": ["flood"],
            "keywords": ["river", "flood"], "first_flag_hour": hour, "last_flag_hour": hour, "peak_score": 6.0,
            "flags": 1, "posts": 12}])
        trends_store.publish_cooccurrence(conn, day, {"food": 3, "night": 2, "flood": 12}, [("food", "night", 2),
                                                                                           ("night", "food", 2)])
        # a day of creator metrics: a view and a like of fz1, a follow of its author
        ts = pa.array([hour, hour], pa.timestamp("us", tz="UTC"))
        metrics.replace_day(conn, day, metrics.compute_day(
            pa.table({"event_type": ["view", "like"], "user_id": ["u1", "u1"], "post_id": ["fz1", "fz1"],
                      "watch_time_s": pa.array([3.0, None], pa.float32()), "created_at": ts}),
            pa.table({"follower_id": ["u1"], "followee_id": ["a-fz1"], "action": ["follow"], "created_at": ts[:1]}),
            pa.table({"post_id": ["fz1"], "author_id": ["a-fz1"], "duration_s": pa.array([10.0], pa.float32())})))
        # a virality prediction of fz1
        virality.ensure_schema(conn)
        virality.upsert(conn, [{"post_id": "fz1", "author_id": "a-fz1", "post_created_at": hour, "predicted_at": hour,
                                "observed_hours": 6.0, "probability": 0.4, "views_so_far": 12, "reach_threshold": 30.0,
                                "model_version": "fuzz"}])
        # captions of fz1 (alt-text, suggestions)
        captions.ensure_tables(conn)
        captions.upsert(conn, [{"post_id": "fz1", "author_id": "a-fz1", "kind": "image",
                                "alt_text": "Street food stall at night", "captions": ["street food market at night"],
                                "hashtags": ["streetfood"], "generator": "grounded-1", "fallback": False,
                                "labels_version": "fuzz", "event_date": day, "generated_at": hour}])


@pytest.fixture(scope="module")
def api_schema(stack, tmp_path_factory):
    """The OpenAPI schema of an app on its own Postgres database and Redis database of the stack."""
    from schemathesis.python.asgi import shutdown_lifespans

    from socialpulse.features import apply_repo

    home = tmp_path_factory.mktemp("fuzz_home")
    fuzz = stack.model_copy(update={
        "home": home, "postgres_db": "fuzz", "redis_url": f"redis://127.0.0.1:{stack.redis_port}/{FUZZ_REDIS_DB}",
        "max_upload_bytes": 64 * 1024,
        # thousands of requests from one client in seconds: limits would answer most of them 429
        "rate_limit_ingest_per_min": 0, "rate_limit_uploads_per_min": 0, "rate_limit_reads_per_min": 0,
    })
    bootstrap_database(fuzz)
    redis.Redis.from_url(fuzz.redis).flushdb()
    apply_repo(fuzz)  # the feature services exist: a post's stats are a real online read (404 when absent)
    app = create_app(fuzz, warm=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    _seed(fuzz, app.state.stores.query_encoder)
    # an admin's token: every route is reached past authentication (an admin reads any creator's analytics)
    AUTH.update(bearer(fuzz, "u1", "admin"))
    yield schema
    shutdown_lifespans()


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    # schemathesis 4.32 reads and rewrites ``Node._nodeid`` to label each operation's subtest; pytest 9.2
    # keeps the id elsewhere (``nodeid`` is read-only), so give it the attribute it expects
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")
#: the Authorization header every fuzzed request carries (set once the app exists)
AUTH: dict[str, str] = {}


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case):
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
