"""The vector index in Postgres (pgvector): post and user vectors, written by the content assets through the
user's ``timescale-vector`` client, and the reads that search and similar posts are served from.

Tables (schema ``search``), made by :data:`DDL` rather than by the client's ``create_tables()``, which
always runs ``CREATE EXTENSION vectorscale`` (missing on plain Postgres, STACK.md):

* ``post_vectors``: the client's layout (``id, metadata, contents, embedding``) with ``id`` = post id, plus
  a generated ``tsvector`` of ``contents`` for keyword search. ``metadata`` holds what queries filter on:
  author, created_at, day, language, kind, hashtags, the moderation ``action``, and the content hash and
  embedding version that say when a row is stale. Removed posts are never indexed; only ``allow`` posts
  are served (:data:`SERVABLE`). HNSW index (cosine) made through the client.
* ``user_vectors``: one interest vector per user (and the cold-start vector under
  :data:`COLD_START_USER`), newest ``as_of`` wins.
* ``hashtags`` / ``creators``: the servable hashtags and authors with their post counts, trigram-indexed
  for the hashtag and creator part of a search.
* ``feed_pool``: the feed's global candidate pools (source, rank, post id and the post's vector), replaced
  as a whole by the feed state (:func:`publish_feed_pool`).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import psycopg
from psycopg.rows import dict_row

from socialpulse.stores.postgres import relation_exists

SCHEMA = "search"
POSTS_TABLE = "post_vectors"
DIM = 384
COLD_START_USER = "__cold_start__"
#: HNSW settings: pgvector's defaults for the build; ef_search per query (bench/results/search.json: at 100k
#: vectors m=16 and ef_search 80 recall 0.974 of the exact top 10 at p50 5 ms)
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
EF_SEARCH = 80
#: maintenance_work_mem for the HNSW build: the graph must fit (about 2 KB a vector at m=16)
HNSW_BUILD_MEMORY = "1GB"
TEXT_SEARCH_CONFIG = "english"
#: the metadata a post needs to be served by search, similar posts and (later) the feed
SERVABLE = {"action": "allow"}
INDEX_NAME = f"{POSTS_TABLE}_embedding_idx"
#: the feed's global candidate pools (popular, fresh, trending), with their vectors so that a request can pick
#: each pool's posts nearest to the user by an exact scan of a few thousand rows (written by the feed state)
FEED_POOL_TABLE = "feed_pool"

DDL = f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.{POSTS_TABLE} (
    id text PRIMARY KEY,
    metadata jsonb NOT NULL,
    contents text NOT NULL,
    embedding vector({DIM}) NOT NULL,
    contents_tsv tsvector GENERATED ALWAYS AS (to_tsvector('{TEXT_SEARCH_CONFIG}', contents)) STORED
);
CREATE INDEX IF NOT EXISTS {POSTS_TABLE}_meta_idx ON {SCHEMA}.{POSTS_TABLE} USING gin (metadata jsonb_path_ops);
CREATE INDEX IF NOT EXISTS {POSTS_TABLE}_tsv_idx ON {SCHEMA}.{POSTS_TABLE} USING gin (contents_tsv);
CREATE INDEX IF NOT EXISTS {POSTS_TABLE}_day_idx ON {SCHEMA}.{POSTS_TABLE} ((metadata->>'day'));
CREATE TABLE IF NOT EXISTS {SCHEMA}.user_vectors (
    user_id text PRIMARY KEY,
    embedding vector({DIM}) NOT NULL,
    cold_start boolean NOT NULL,
    weight real NOT NULL,
    as_of date NOT NULL,
    embedding_version text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.hashtags (
    tag text PRIMARY KEY,
    posts integer NOT NULL,
    last_post_at timestamptz
);
CREATE INDEX IF NOT EXISTS hashtags_trgm_idx ON {SCHEMA}.hashtags USING gin (tag gin_trgm_ops);
CREATE TABLE IF NOT EXISTS {SCHEMA}.creators (
    user_id text PRIMARY KEY,
    handle text NOT NULL,
    posts integer NOT NULL,
    last_post_at timestamptz
);
CREATE INDEX IF NOT EXISTS creators_trgm_idx ON {SCHEMA}.creators USING gin (handle gin_trgm_ops);
CREATE TABLE IF NOT EXISTS {SCHEMA}.{FEED_POOL_TABLE} (
    source text NOT NULL,
    rank integer NOT NULL,
    post_id text NOT NULL,
    embedding vector({DIM}) NOT NULL,
    PRIMARY KEY (source, rank)
);
"""

_READY: "weakref.WeakSet[psycopg.Connection]" = weakref.WeakSet()


class IndexNotBuilt(LookupError):
    """The search tables do not exist yet (the content assets have not run)."""


def ensure_tables(conn: psycopg.Connection) -> None:
    """Create the search tables once per connection (serialised: daily runs can start together)."""
    if conn in _READY:
        return
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('search.ddl'))")
    conn.execute(DDL)
    conn.commit()
    _READY.add(conn)


def index_client(dsn: str, table: str = POSTS_TABLE):
    """The timescale-vector client on ``search.<table>`` (text ids = post ids, cosine distance)."""
    from timescale_vector import client

    return client.Sync(dsn, table, DIM, distance_type="cosine", id_type="TEXT", schema_name=SCHEMA,
                       max_db_connections=2, infer_filters=False)


def ensure_hnsw(conn: psycopg.Connection, *, m: int = HNSW_M,
                ef_construction: int = HNSW_EF_CONSTRUCTION, build_memory: str = HNSW_BUILD_MEMORY) -> bool:
    """Create the HNSW index if it is missing; True when it was created now. The SQL is the client's
    (``create_embedding_index_query``), run on this connection with ``maintenance_work_mem`` raised: a
    graph that does not fit builds several times slower (measured here: 100k random vectors took 332 s at
    pgvector's 64 MB default, 97 s with 1 GB)."""
    from timescale_vector import client

    if relation_exists(conn, f"{SCHEMA}.{INDEX_NAME}"):
        return False
    builder = client.QueryBuilder(POSTS_TABLE, DIM, "cosine", "TEXT", None, False, SCHEMA)
    sql = builder.create_embedding_index_query(client.HNSWIndex(m=m, ef_construction=ef_construction), lambda: 0)
    with conn.transaction():
        conn.execute(f"SET LOCAL maintenance_work_mem = '{build_memory}'")
        conn.execute(sql)
    prewarm(conn)
    return True


def prewarm(conn: psycopg.Connection) -> dict[str, int]:
    """Load the feed's hot relations (the vector table, its HNSW index, the feed pools) into Postgres's
    buffer cache, and return the blocks read per relation. Every feed request walks the HNSW graph: pages
    that are not in the cache cost a read each (at 1M posts ~7k per request), so an index is warmed when it
    is built, before traffic finds it cold (the embedded Postgres also reloads its cache after a restart,
    ``autoprewarm``). Needs the ``pg_prewarm`` extension; where it is not available nothing is loaded."""
    from socialpulse.stores.postgres import has_extension

    if not has_extension(conn, "pg_prewarm"):
        return {}
    out = {}
    with conn.transaction():
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        for rel in (f"{SCHEMA}.{POSTS_TABLE}", f"{SCHEMA}.{INDEX_NAME}", f"{SCHEMA}.{FEED_POOL_TABLE}"):
            if relation_exists(conn, rel):
                out[rel] = int(conn.execute("SELECT pg_prewarm(%s::regclass)", [rel]).fetchone()[0])
    return out


def vector_literal(v: Sequence[float] | np.ndarray) -> str:
    """pgvector's text form, ``[x,y,...]`` (accepted wherever a vector is, without a registered adapter)."""
    return "[" + ",".join(f"{float(x):.7g}" for x in np.asarray(v, dtype=np.float32).ravel()) + "]"


def parse_vector(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    return np.asarray(json.loads(text), dtype=np.float32)


# --- writes (the content assets) ---------------------------------------------------------------------------
def day_rows(conn: psycopg.Connection, day: str) -> dict[str, dict]:
    """id -> metadata of the indexed posts of one day."""
    rows = conn.execute(
        f"SELECT id, metadata FROM {SCHEMA}.{POSTS_TABLE} WHERE metadata->>'day' = %s", (day,)).fetchall()
    return {r[0]: r[1] for r in rows}


def sync_day(conn: psycopg.Connection, dsn: str, day: str, records: Sequence[tuple[str, dict, str, np.ndarray]]) -> dict[str, int]:
    """Make the index's rows for ``day`` exactly ``records`` (``(post_id, metadata, contents, vector)``).

    Rows of posts no longer in ``records`` (deleted, or now removed by moderation) are deleted; a row
    whose content hash or embedding version changed is replaced (the client's upsert never overwrites);
    a row whose metadata alone changed (a new moderation action) is updated in place; unchanged rows
    are left alone, so a re-run writes nothing."""
    ensure_tables(conn)
    existing = day_rows(conn, day)
    incoming = {r[0]: r for r in records}
    stale = [pid for pid in existing if pid not in incoming]
    replace, update, insert = [], [], []
    for pid, rec in incoming.items():
        old = existing.get(pid)
        if old is None:
            insert.append(rec)
        elif (old.get("content_hash"), old.get("embedding_version")) != (rec[1].get("content_hash"), rec[1].get("embedding_version")):
            replace.append(rec)
        elif old != rec[1]:
            update.append(rec)
    conn.commit()
    tv = index_client(dsn)
    try:
        gone = stale + [r[0] for r in replace]
        if gone:
            tv.delete_by_ids(gone)
        new = insert + replace
        for i in range(0, len(new), 2000):
            tv.upsert([(pid, meta, contents, np.asarray(vec, dtype=np.float32))
                       for pid, meta, contents, vec in new[i:i + 2000]])
    finally:
        tv.close()
    if update:
        with conn.cursor() as cur:
            cur.executemany(f"UPDATE {SCHEMA}.{POSTS_TABLE} SET metadata = %s::jsonb WHERE id = %s",
                            [(json.dumps(r[1]), r[0]) for r in update])
        conn.commit()
    return {"inserted": len(insert), "replaced": len(replace), "updated": len(update), "deleted": len(stale),
            "unchanged": len(incoming) - len(insert) - len(replace) - len(update)}


def refresh_directory(conn: psycopg.Connection) -> dict[str, int]:
    """Rebuild ``hashtags`` and ``creators`` from the servable indexed posts (one transaction: readers
    see the old lists until the new ones are complete)."""
    ensure_tables(conn)
    servable = json.dumps(SERVABLE)
    with conn.transaction():
        conn.execute(f"DELETE FROM {SCHEMA}.hashtags")
        tags = conn.execute(
            f"""INSERT INTO {SCHEMA}.hashtags (tag, posts, last_post_at)
                SELECT lower(tag), count(*), max((metadata->>'created_at')::timestamptz)
                FROM {SCHEMA}.{POSTS_TABLE}, jsonb_array_elements_text(metadata->'hashtags') AS tag
                WHERE metadata @> %s::jsonb GROUP BY lower(tag)""", (servable,)).rowcount
        conn.execute(f"DELETE FROM {SCHEMA}.creators")
        creators = conn.execute(
            f"""INSERT INTO {SCHEMA}.creators (user_id, handle, posts, last_post_at)
                SELECT metadata->>'author_id', max(coalesce(metadata->>'author_handle', metadata->>'author_id')),
                       count(*), max((metadata->>'created_at')::timestamptz)
                FROM {SCHEMA}.{POSTS_TABLE} WHERE metadata @> %s::jsonb GROUP BY metadata->>'author_id'""",
            (servable,)).rowcount
    return {"hashtags": tags, "creators": creators}


def upsert_user_vectors(conn: psycopg.Connection, rows: Iterable[tuple[str, np.ndarray, bool, float]], as_of,
                        embedding_version: str) -> int:
    """Write user interest vectors as of a day; a row never replaces one of a later day (backfills of old
    days leave current vectors alone)."""
    ensure_tables(conn)
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS user_vectors_in (user_id text, embedding text, "
                    "cold_start boolean, weight real) ON COMMIT DELETE ROWS")
        n = 0
        with cur.copy("COPY user_vectors_in (user_id, embedding, cold_start, weight) FROM STDIN") as copy:
            for user_id, vec, cold, weight in rows:
                copy.write_row((user_id, vector_literal(vec), cold, float(weight)))
                n += 1
        cur.execute(
            f"""INSERT INTO {SCHEMA}.user_vectors AS u (user_id, embedding, cold_start, weight, as_of, embedding_version)
                SELECT user_id, embedding::vector, cold_start, weight, %s, %s FROM user_vectors_in
                ON CONFLICT (user_id) DO UPDATE SET embedding = EXCLUDED.embedding, cold_start = EXCLUDED.cold_start,
                    weight = EXCLUDED.weight, as_of = EXCLUDED.as_of, embedding_version = EXCLUDED.embedding_version,
                    updated_at = now()
                WHERE EXCLUDED.as_of >= u.as_of""", (as_of, embedding_version))
    conn.commit()
    return n


# --- reads (serving) ---------------------------------------------------------------------------------------
_INDEXED: "weakref.WeakKeyDictionary[psycopg.Connection, set[str]]" = weakref.WeakKeyDictionary()
_NOT_BUILT = {POSTS_TABLE: "the search index has not been built yet (materialize postgres/search/post_vectors)",
              FEED_POOL_TABLE: "the feed's candidate pools have not been published yet (materialize feed_serving_state)"}


def _require_index(conn: psycopg.Connection, table: str = POSTS_TABLE) -> None:
    """Raise :class:`IndexNotBuilt` until ``table`` exists (checked once per connection: the tables are never
    dropped, so a serving request pays no extra round trip)."""
    if conn in _READY or table in _INDEXED.get(conn, ()):
        return
    if not relation_exists(conn, f"{SCHEMA}.{table}"):
        raise IndexNotBuilt(_NOT_BUILT[table])
    _INDEXED.setdefault(conn, set()).add(table)


def index_encoder_version(conn: psycopg.Connection) -> str | None:
    """The encoder version the indexed post vectors were made with (None while the index is empty)."""
    _require_index(conn)
    row = conn.execute(f"SELECT metadata->>'embedding_version' FROM {SCHEMA}.{POSTS_TABLE} LIMIT 1").fetchone()
    return row[0].split("+", 1)[0] if row and row[0] else None


def _client_sql(query: str, params: list) -> tuple[str, list]:
    """The client builds asyncpg-style SQL (``$1``, ``$2``, in order); psycopg takes ``%s``."""
    import re

    used = [int(n) for n in re.findall(r"\$(\d+)", query)]
    sql = re.sub(r"\$(\d+)", "%s", query.replace("%", "%%"))
    return sql, [params[n - 1] for n in used]


def nearest(conn: psycopg.Connection, vector: np.ndarray, limit: int, *, ef_search: int = EF_SEARCH,
            servable_only: bool = True, exact: bool = False) -> list[dict]:
    """The ``limit`` nearest indexed posts to ``vector`` (cosine), servable ones only by default. The SQL is
    the timescale-vector client's (metadata filter + ORDER BY distance), run with HNSW's ``ef_search`` and
    pgvector's iterative scan, so a filter that rejects many neighbours still fills the page. ``exact``
    turns index scans off: a full scan, the ground truth the approximate search is measured against."""
    from timescale_vector.client import QueryBuilder

    _require_index(conn)
    builder = QueryBuilder(POSTS_TABLE, DIM, "cosine", "TEXT", None, False, SCHEMA)
    query, params = builder.search_query(vector_literal(vector), limit, dict(SERVABLE) if servable_only else None)
    query = query.replace("SELECT\n            id, metadata, contents, embedding,", "SELECT\n            id, metadata, contents,")
    query = query.replace("embedding <=> $1", "embedding <=> $1::vector")
    sql, args = _client_sql(query, params)
    with conn.transaction():
        conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        if exact:
            conn.execute("SET LOCAL enable_indexscan = off")
        with conn.cursor(row_factory=dict_row) as cur:
            # never a prepared statement: psycopg prepares a query on its 5th run on a connection, and after 5
            # more Postgres may settle on a generic plan, planned without the query vector, which reads every
            # servable row through the metadata index and sorts them (about 50 ms at 20k posts, against 1.5 ms
            # through HNSW); an unnamed statement is planned with the vector each time
            rows = cur.execute(sql, args, prepare=False).fetchall()
    # relaxed_order may return neighbours slightly out of order: restore it
    return sorted(({"post_id": r["id"], "distance": float(r["distance"]), "metadata": r["metadata"],
                    "contents": r["contents"]} for r in rows), key=lambda r: r["distance"])


#: keyword matches ranked per query: up to this many rows matching every term, and as many matching any
#: term (a common word matches a large share of the index; ranking all of them cost 200+ ms at 100k posts)
KEYWORD_POOL = 500


def keyword(conn: psycopg.Connection, query, limit: int, pool: int = KEYWORD_POOL) -> list[dict]:
    """Servable posts matching the query's terms in Postgres full text: those matching every term first,
    then by ``ts_rank`` (term frequency, so more matched terms rank higher). Ranking is bounded to a pool
    of ``pool`` all-term and ``pool`` any-term matches."""
    _require_index(conn)
    table = f"{SCHEMA}.{POSTS_TABLE}"
    # with a LIMIT the planner bets on a sequential scan stopping early, which reads the whole table when
    # the terms are rare (250+ ms at 100k posts); the full-text GIN index answers either case in a few ms
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        return cur.execute(
            f"""WITH q AS (SELECT to_tsquery('{TEXT_SEARCH_CONFIG}', %(any)s) AS q_any,
                                  to_tsquery('{TEXT_SEARCH_CONFIG}', %(all)s) AS q_all),
                     candidates AS (
                         (SELECT id FROM {table}, q WHERE contents_tsv @@ q_all AND metadata @> %(servable)s::jsonb
                          LIMIT %(pool)s)
                         UNION
                         (SELECT id FROM {table}, q WHERE contents_tsv @@ q_any AND metadata @> %(servable)s::jsonb
                          LIMIT %(pool)s))
                SELECT t.id AS post_id, t.metadata, t.contents,
                       (t.contents_tsv @@ q_all)::int + ts_rank(t.contents_tsv, q_any) AS rank
                FROM {table} t JOIN candidates USING (id), q
                ORDER BY rank DESC, t.id LIMIT %(limit)s""",
            {"any": query.tsquery(), "all": query.tsquery_all(), "servable": json.dumps(SERVABLE), "pool": pool,
             "limit": limit}).fetchall()


def hybrid(conn: psycopg.Connection, query, vector: np.ndarray, candidates: int | None = None):
    """The search ranking: the ``candidates`` nearest servable posts and the ``candidates`` best keyword
    matches, fused by reciprocal rank. Returns (fused ids in order, post id -> row)."""
    from socialpulse.search import CANDIDATES, fuse

    candidates = candidates or CANDIDATES
    semantic = nearest(conn, vector, candidates)
    matches = keyword(conn, query, candidates)
    rows = {r["post_id"]: r for r in matches}
    rows.update({r["post_id"]: r for r in semantic})  # semantic rows carry the distance
    fused = fuse({"semantic": [r["post_id"] for r in semantic], "keyword": [r["post_id"] for r in matches]})
    return fused, rows


def post_vector(conn: psycopg.Connection, post_id: str) -> tuple[np.ndarray, dict] | None:
    _require_index(conn)
    row = conn.execute(f"SELECT embedding::text, metadata FROM {SCHEMA}.{POSTS_TABLE} WHERE id = %s", (post_id,)).fetchone()
    return None if row is None else (parse_vector(row[0]), row[1])


def user_vector(conn: psycopg.Connection, user_id: str) -> dict | None:
    """A user's interest vector, or the cold-start vector (``cold_start: true``) for a user without one;
    None when no vectors exist at all."""
    if not relation_exists(conn, f"{SCHEMA}.user_vectors"):
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT user_id, embedding::text AS embedding, cold_start, weight, as_of, embedding_version
                FROM {SCHEMA}.user_vectors WHERE user_id = ANY(%s)""", ([user_id, COLD_START_USER],)).fetchall()
    by_id = {r["user_id"]: r for r in rows}
    row = by_id.get(user_id) or by_id.get(COLD_START_USER)
    if row is None:
        return None
    return {**row, "embedding": parse_vector(row["embedding"]), "cold_start": row["cold_start"] or row["user_id"] != user_id}


def hashtags(conn: psycopg.Connection, prefix: str, limit: int) -> list[dict]:
    """Servable hashtags that start with, or are close (trigram) to, the query's words."""
    if not relation_exists(conn, f"{SCHEMA}.hashtags"):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""SELECT tag, posts FROM {SCHEMA}.hashtags
                WHERE tag LIKE %s OR tag %% %s
                ORDER BY (tag LIKE %s) DESC, similarity(tag, %s) DESC, posts DESC, tag LIMIT %s""",
            (_like(prefix), prefix, _like(prefix), prefix, limit)).fetchall()


def creators(conn: psycopg.Connection, prefix: str, limit: int, also: Sequence[str] = ()) -> list[dict]:
    """Creators whose handle starts with or resembles the query, then the authors of the best matching
    posts (``also``, in order)."""
    if not relation_exists(conn, f"{SCHEMA}.creators"):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        named = cur.execute(
            f"""SELECT user_id, handle, posts FROM {SCHEMA}.creators
                WHERE handle LIKE %s OR handle %% %s
                ORDER BY (handle LIKE %s) DESC, similarity(handle, %s) DESC, posts DESC LIMIT %s""",
            (_like(prefix), prefix, _like(prefix), prefix, limit)).fetchall()
        if len(named) < limit and also:
            more = cur.execute(f"SELECT user_id, handle, posts FROM {SCHEMA}.creators WHERE user_id = ANY(%s)",
                               (list(also),)).fetchall()
            order = {u: i for i, u in enumerate(also)}
            seen = {r["user_id"] for r in named}
            named += sorted((r for r in more if r["user_id"] not in seen), key=lambda r: order[r["user_id"]])
    return named[:limit]


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# --- the feed's candidate read (one round trip) ----------------------------------------------------------------
def configure_session(conn: psycopg.Connection) -> None:
    """Session settings of a serving connection (set once per connection, so a request needs no SET round
    trip): HNSW's ``ef_search`` and pgvector's iterative scan, as :func:`nearest` uses them, and custom plans
    for prepared statements. psycopg prepares a statement from its sixth run, and Postgres may then switch to
    a generic plan, blind to ``LIMIT`` and array parameters: for the feed's candidate statement that plan
    sorts the whole index by distance instead of walking HNSW (measured: 73 ms against 7 ms at 100k posts)."""
    conn.execute(f"SET hnsw.ef_search = {int(EF_SEARCH)}")
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    conn.execute("SET plan_cache_mode = force_custom_plan")
    conn.commit()


def publish_feed_pool(conn: psycopg.Connection, pools: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Replace the feed's candidate pools (source -> post ids, best first) in one transaction, copying each
    post's vector from the index; posts not servable are left out. Readers see the old pools or the new."""
    unknown = set(pools) - set(FEED_POOLS)
    if unknown:
        raise ValueError(f"unknown feed pools {sorted(unknown)}: a candidate row has a bit for each of {FEED_POOLS}")
    ensure_tables(conn)
    sources = [src for src, ids in pools.items() for _ in ids]
    ranks = [i for ids in pools.values() for i in range(len(ids))]
    ids = [p for ids_ in pools.values() for p in ids_]
    with conn.transaction():
        conn.execute(f"DELETE FROM {SCHEMA}.{FEED_POOL_TABLE}")
        conn.execute(
            f"""INSERT INTO {SCHEMA}.{FEED_POOL_TABLE} (source, rank, post_id, embedding)
                SELECT x.source, x.rank, p.id, p.embedding
                FROM unnest(%s::text[], %s::int[], %s::text[]) AS x(source, rank, post_id)
                JOIN {SCHEMA}.{POSTS_TABLE} p ON p.id = x.post_id AND p.metadata @> %s::jsonb""",
            (sources, ranks, ids, json.dumps(SERVABLE)))
    counts = conn.execute(f"SELECT source, count(*) FROM {SCHEMA}.{FEED_POOL_TABLE} GROUP BY source").fetchall()
    return {src: n for src, n in counts}


#: the feed's global pools, in the order of their bits in a candidate row's ``flags``
FEED_POOLS = ("popular", "fresh", "trending")
#: columns of a candidate row (a tuple: parsing ~700 rows into dicts was a fifth of the API's CPU per request)
FEED_COLUMNS = ("post_id", "author_id", "topic", "created_at", "sim_interest", "sim_not_interested", "flags")


def feed_flags(nearest: bool = False, pools: Iterable[str] = (), heads: Iterable[str] = ()) -> int:
    """A candidate row's ``flags``: bit 0 ``nearest``, then one bit per pool of :data:`FEED_POOLS` that
    offered the post, then one per pool it heads (the same encoding as the SQL of :func:`feed_candidates`)."""
    n = len(FEED_POOLS)
    return (int(bool(nearest)) | sum(1 << (1 + FEED_POOLS.index(p)) for p in set(pools))
            | sum(1 << (1 + n + FEED_POOLS.index(p)) for p in set(heads)))


def _decode_flags(flags: int) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    n = len(FEED_POOLS)
    return (bool(flags & 1), tuple(p for i, p in enumerate(FEED_POOLS) if flags >> (1 + i) & 1),
            tuple(p for i, p in enumerate(FEED_POOLS) if flags >> (1 + n + i) & 1))


_FLAGS = tuple(_decode_flags(f) for f in range(1 << (1 + 2 * len(FEED_POOLS))))


def flag_pools(flags: int) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    """``(nearest, pools, heads)`` of a candidate row's ``flags`` (the inverse of :func:`feed_flags`; a
    table lookup, as it runs for every candidate of every request)."""
    return _FLAGS[flags]


def feed_candidates(conn: psycopg.Connection, user_id: str, other_ids: Sequence[str], not_interested: Sequence[str],
                    k_interest: int, per_pool: int, pool_head: int) -> list[tuple]:
    """In one statement, a request's candidates from Postgres:

    - the ``k_interest`` servable posts nearest to the user's interest vector (the cold-start vector for a
      user without one), through the HNSW index (``nearest``);
    - from each feed pool (popular, fresh, trending) its ``per_pool`` posts nearest to that vector, by an
      exact scan of the pool, and its first ``pool_head`` (most popular, newest, most trending) whatever
      their similarity (the pools a post was picked from, and those it heads);
    - the servable ones among ``other_ids`` (the user's own sources: followed creators' posts).

    Each row has the post's author, first hashtag (``topic``), creation time, cosine similarity to the
    interest vector and the highest similarity to the posts the user marked not interested. Posts not
    servable (pending, review, limit, remove) never come back. Rows are tuples of :data:`FEED_COLUMNS`,
    where ``flags`` says how the post was offered (:func:`feed_flags`, :func:`flag_pools`), read in
    Postgres's binary format."""
    _require_index(conn)
    _require_index(conn, FEED_POOL_TABLE)
    table = f"{SCHEMA}.{POSTS_TABLE}"
    servable = json.dumps(SERVABLE)
    n = len(FEED_POOLS)
    with conn.cursor() as cur:
        return cur.execute(
            f"""WITH u AS (SELECT embedding FROM {SCHEMA}.user_vectors WHERE user_id = ANY(%(users)s)
                           ORDER BY (user_id = %(user)s) DESC LIMIT 1),
                     ann AS (SELECT p.id FROM {table} p WHERE p.metadata @> %(servable)s::jsonb
                             ORDER BY p.embedding <=> (SELECT embedding FROM u) LIMIT %(k)s),
                     pool AS (SELECT post_id, (1 << b) | CASE WHEN rank < %(head)s THEN 1 << (b + {n}) ELSE 0 END
                                     AS flags FROM (
                                SELECT post_id, rank, array_position(%(pools)s::text[], source) AS b,
                                       row_number() OVER (PARTITION BY source
                                                          ORDER BY embedding <=> (SELECT embedding FROM u)) AS n
                                FROM {SCHEMA}.{FEED_POOL_TABLE}) x WHERE n <= %(per_pool)s OR rank < %(head)s),
                     ni AS MATERIALIZED (SELECT embedding FROM {table} WHERE id = ANY(%(ni)s)),
                     ids AS (SELECT id, bit_or(flags) AS flags
                             FROM (SELECT id, 1 AS flags FROM ann
                                   UNION ALL SELECT post_id, flags FROM pool
                                   UNION ALL SELECT unnest(%(others)s::text[]), 0) x GROUP BY id)
                SELECT p.id, p.metadata->>'author_id', p.metadata->'hashtags'->>0, p.metadata->>'created_at',
                       1 - (p.embedding <=> (SELECT embedding FROM u)),
                       (SELECT max(1 - (p.embedding <=> ni.embedding)) FROM ni), ids.flags
                FROM ids JOIN {table} p ON p.id = ids.id
                WHERE p.metadata @> %(servable)s::jsonb""",
            {"users": [user_id, COLD_START_USER], "user": user_id, "servable": servable, "k": int(k_interest),
             "per_pool": int(per_pool), "head": int(pool_head), "ni": list(not_interested), "others": list(other_ids),
             "pools": list(FEED_POOLS)}, binary=True).fetchall()
