"""The corpus: every app, its defect (or none), the rule and culprit expected, and what today's tool says.

`WIRE` lists the apps also captured with `monitor --source wire` (their expectations are the same; `TODAY_WIRE`
says where that source gets one wrong).

A bug app names the rule id and the process (by its PM2 name or role) whose pid the finding must name; `culprit`
None means the server itself did it (eviction). A healthy twin has `rule` None: zero findings and exit 0.
`today` records what today's redisprobe says instead where it gets the app wrong (the tests mark those
xfail(strict=True)), so a fix shows up as an XPASS that forces removing it.
"""

from __future__ import annotations

from tests.apps.harness import App, Proc

PY = "{python}"

MAIL = {"BULL_PREFIX": "mail"}

APPS: list[App] = [
    # --- two Redis Clusters that look alike (the heaviest apps: six servers each, so they start first) ------------
    App("cluster-renders", "ioredis Cluster + node:http", "pm2", "two clusters that look alike (production and "
        "staging); the render api saves each job on production and posts its id to the render worker, which loads "
        "it from production too",
        [Proc("api", "node/clusterrenders/api.mjs", env={"WORKER_PORT": "{http}"}),
         Proc("renderer", "node/clusterrenders/worker.mjs", env={"HTTP_PORT": "{http}"})],
        topology="two-clusters", twin="cluster-renders-other-cluster"),
    App("cluster-renders-other-cluster", "ioredis Cluster + node:http", "pm2", "the render worker was deployed "
        "with the staging cluster's REDIS_URL: same version, same ports, and every job it is told about is missing",
        [Proc("api", "node/clusterrenders/api.mjs", env={"WORKER_PORT": "{http}"}),
         Proc("renderer", "node/clusterrenders/worker.mjs", env={"HTTP_PORT": "{http}", "REDIS_URL": "{other_url}"})],
        rule="different-server", culprit="renderer", topology="two-clusters", twin="cluster-renders"),
    # --- BullMQ, PM2 fork mode and cluster mode ---------------------------------------------------------------
    App("bullmq", "bullmq", "pm2", "BullMQ producer and worker on one queue, both with prefix 'mail'",
        [Proc("api", "node/bullmq/producer.mjs", env=MAIL), Proc("mailer", "node/bullmq/worker.mjs", env=MAIL)],
        twin="bullmq-prefix"),
    App("bullmq-prefix", "bullmq", "pm2", "the worker's PM2 env lacks BULL_PREFIX: it waits on bull:emails:*, the "
        "producer writes mail:emails:*",
        [Proc("api", "node/bullmq/producer.mjs", env=MAIL), Proc("mailer", "node/bullmq/worker.mjs")],
        rule="key-prefix-mismatch", culprit="mailer", twin="bullmq"),
    App("bullmq-cluster", "bullmq", "pm2 cluster (2 worker instances)", "BullMQ workers in PM2 cluster mode, "
        "concurrency 4; every 4th email is delayed 500 ms, every 5th fails once and is retried after 200 ms",
        [Proc("api", "node/bullmq/producer.mjs", env={**MAIL, "DELAYED_EVERY": "4"}),
         Proc("mailer", "node/bullmq/worker.mjs", instances=2,
              env={**MAIL, "CONCURRENCY": "4", "FAIL_EVERY": "5"})]),
    App("bullmq-flushdb", "bullmq + node-redis", "pm2", "a cache warmer on the queue's db runs FLUSHDB every "
        "second to clear the cache: queued jobs vanish",
        [Proc("api", "node/bullmq/producer.mjs", env=MAIL), Proc("mailer", "node/bullmq/worker.mjs", env=MAIL),
         Proc("warmer", "node/bullmq/warmer.mjs")],
        rule="flushed", culprit="warmer", twin="bullmq"),
    # --- ioredis keyPrefix ---------------------------------------------------------------------------------------
    App("ioredis-prefix", "ioredis", "pm2", "account service and recommendations share a cache through ioredis "
        "keyPrefix 'shop:'",
        [Proc("accounts", "node/profiles/api.mjs", env={"CACHE_PREFIX": "shop:"}),
         Proc("recommender", "node/profiles/reader.mjs", env={"CACHE_PREFIX": "shop:"})],
        twin="ioredis-prefix-missing"),
    App("ioredis-prefix-missing", "ioredis", "pm2", "the reader's PM2 env lacks CACHE_PREFIX: it GETs "
        "profile:<id>, the writer wrote shop:profile:<id>",
        [Proc("accounts", "node/profiles/api.mjs", env={"CACHE_PREFIX": "shop:"}),
         Proc("recommender", "node/profiles/reader.mjs")],
        rule="key-prefix-mismatch", culprit="recommender", twin="ioredis-prefix"),
    # --- node-redis, logical db from the env ---------------------------------------------------------------------
    App("noderedis-db", "node-redis", "pm2", "orders written as hashes in db 2 and announced by PUBLISH; the "
        "worker reads them in db 2",
        [Proc("shop", "node/orders/api.mjs", env={"REDIS_DB": "2"}),
         Proc("fulfilment", "node/orders/worker.mjs", env={"REDIS_DB": "2"})],
        twin="noderedis-db-missing"),
    App("noderedis-db-missing", "node-redis", "pm2", "the worker's PM2 env lacks REDIS_DB: it gets the "
        "announcements (pub/sub ignores dbs) but reads the orders in db 0",
        [Proc("shop", "node/orders/api.mjs", env={"REDIS_DB": "2"}),
         Proc("fulfilment", "node/orders/worker.mjs")],
        rule="different-db", culprit="fulfilment", twin="noderedis-db"),
    # --- PM2 cluster mode ----------------------------------------------------------------------------------------
    App("cluster-flush", "ioredis + express", "pm2 cluster (2 instances)", "tracking api in cluster mode; the "
        "periodic flush of events:pending runs on instance 0 only (NODE_APP_INSTANCE)",
        [Proc("tracker", "node/pageviews/app.mjs", instances=2, env={"PORT": "{http}", "SINGLE_FLUSHER": "1"}),
         Proc("browsers", "node/pageviews/loadgen.mjs", redis=False, env={"PORT": "{http}"})],
        twin="cluster-flush-every-instance"),
    App("cluster-flush-every-instance", "ioredis + express", "pm2 cluster (2 instances)", "the flush has no "
        "NODE_APP_INSTANCE guard: both instances LPOP events:pending, each folding part of the events",
        [Proc("tracker", "node/pageviews/app.mjs", instances=2, env={"PORT": "{http}"}),
         Proc("browsers", "node/pageviews/loadgen.mjs", redis=False, env={"PORT": "{http}"})],
        rule="consumed-by-other", culprit="tracker", twin="cluster-flush"),
    App("cluster-flush-leftover", "ioredis + express", "pm2", "the tracker runs as one instance; a tracker-v1 "
        "from the previous deploy is still running under PM2 (nobody lists it) and flushes events:pending too",
        [Proc("tracker", "node/pageviews/app.mjs", env={"PORT": "{http}"}),
         Proc("browsers", "node/pageviews/loadgen.mjs", redis=False, env={"PORT": "{http}"}),
         Proc("tracker-v1", "node/pageviews/app.mjs", listed=False, env={"PORT": "{admin}"})],
        rule="consumed-by-other", culprit="tracker-v1", twin="cluster-flush"),
    # --- express-session + connect-redis -------------------------------------------------------------------------
    App("sessions", "express-session + connect-redis (node-redis)", "pm2", "site and back office share "
        "sessions (default prefix sess:)",
        [Proc("site", "node/sessions/web.mjs", env={"PORT": "{http}"}),
         Proc("backoffice", "node/sessions/admin.mjs", env={"ADMIN_PORT": "{admin}"}),
         Proc("shoppers", "node/sessions/loadgen.mjs", redis=False, env={"PORT": "{http}", "ADMIN_PORT": "{admin}"})],
        twin="sessions-prefix"),
    App("sessions-prefix", "express-session + connect-redis (node-redis)", "pm2", "the back office copied "
        "connect-redis's README: prefix 'myapp:'; every shared session misses there",
        [Proc("site", "node/sessions/web.mjs", env={"PORT": "{http}"}),
         Proc("backoffice", "node/sessions/admin.mjs", env={"ADMIN_PORT": "{admin}", "SESSION_PREFIX": "myapp:"}),
         Proc("shoppers", "node/sessions/loadgen.mjs", redis=False, env={"PORT": "{http}", "ADMIN_PORT": "{admin}"})],
        rule="key-prefix-mismatch", culprit="backoffice", twin="sessions"),
    App("sessions-evicted", "express-session + cache-manager/@keyv/redis", "pm2", "a page cache fills a server "
        "with maxmemory 4mb allkeys-lru: the server evicts keys (sessions among them)",
        [Proc("site", "node/sessions/web.mjs", env={"PORT": "{http}"}),
         Proc("shoppers", "node/sessions/loadgen.mjs", redis=False, env={"PORT": "{http}"}),
         Proc("pages", "node/catalog/pages.mjs")],
        rule="evicted", culprit=None, server_args=["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"],
        twin="sessions"),
    # --- cache-manager + Keyv -----------------------------------------------------------------------------------
    App("cache-manager", "cache-manager + keyv + @keyv/redis", "pm2", "product lookups cached with "
        "cache.wrap(key, fn, 30000): 30 s in milliseconds",
        [Proc("catalog", "node/catalog/catalog.mjs", env={"PRODUCT_TTL": "30000"})],
        twin="cache-manager-ttl-seconds"),
    App("cache-manager-ttl-seconds", "cache-manager + keyv + @keyv/redis", "pm2", "ttl 30 carried over from "
        "cache-manager 4 (seconds); cache-manager 5+ reads milliseconds: every entry lives 30 ms",
        [Proc("catalog", "node/catalog/catalog.mjs", env={"PRODUCT_TTL": "30"})],
        rule="ttl-unit-mismatch", culprit="catalog", twin="cache-manager"),
    # --- rate limiters --------------------------------------------------------------------------------------------
    App("ratelimit", "ioredis + express", "pm2", "hand-written fixed-window limiter: INCRBY cost, EXPIRE when "
        "the counter equals the cost (the window opened)",
        [Proc("gateway", "node/gateway/gateway.mjs", env={"PORT": "{http}"}),
         Proc("clients", "node/gateway/loadgen.mjs", redis=False, env={"PORT": "{http}"})],
        twin="ratelimit-recreated"),
    App("ratelimit-recreated", "ioredis + express", "pm2", "the limiter sets the TTL only when INCRBY returns "
        "1: a window opened by a cost-5 export recreates the expired counter without a TTL",
        [Proc("gateway", "node/gateway/gateway.mjs", env={"PORT": "{http}", "WINDOW_OPENS_AT": "first-unit"}),
         Proc("clients", "node/gateway/loadgen.mjs", redis=False, env={"PORT": "{http}"})],
        rule="recreated-without-ttl", culprit="gateway", twin="ratelimit"),
    App("rate-limiter-flexible", "rate-limiter-flexible + ioredis", "pm2", "the same gateway on "
        "RateLimiterRedis (points 40 per 1 s)",
        [Proc("gateway", "node/gateway/gateway.mjs", env={"PORT": "{http}", "LIMITER": "flexible"}),
         Proc("clients", "node/gateway/loadgen.mjs", redis=False, env={"PORT": "{http}"})]),
    # --- ioredis MULTI --------------------------------------------------------------------------------------------
    App("wallet", "ioredis", "pm2", "transfers as MULTI (pipeline: false), open ~30 ms while a risk check answers; "
        "a refused transfer is DISCARDed",
        [Proc("wallet", "node/wallet/wallet.mjs", env={"DISCARD_REFUSED": "1"}),
         Proc("statements", "node/wallet/statements.mjs")],
        twin="wallet-multi-left-open"),
    App("wallet-multi-left-open", "ioredis", "pm2", "a refused transfer returns without DISCARD: the "
        "connection stays inside MULTI and nothing it sends afterwards runs",
        [Proc("wallet", "node/wallet/wallet.mjs"), Proc("statements", "node/wallet/statements.mjs")],
        rule="transaction-not-executed", culprit="wallet", twin="wallet"),
    # --- presence heartbeats --------------------------------------------------------------------------------------
    App("presence", "ioredis", "pm2", "presence keys EX 2, refreshed every 500 ms by a heartbeat service",
        [Proc("chat", "node/presence/api.mjs"), Proc("heartbeat", "node/presence/heartbeat.mjs")],
        twin="presence-refresh-misnamed"),
    App("presence-refresh-misnamed", "ioredis", "pm2", "the heartbeat's PRESENCE_KEY is presence:{id}, the api "
        "writes presence:user:{id}: every refresh misses and users drop offline after 2 s",
        [Proc("chat", "node/presence/api.mjs"),
         Proc("heartbeat", "node/presence/heartbeat.mjs", env={"PRESENCE_KEY": "presence:{id}"})],
        rule="ttl-refresh-missed", culprit="heartbeat", twin="presence"),
    # --- node-redis writer, redis-py updater under PM2 ------------------------------------------------------------
    App("profile-sync", "node-redis + redis-py", "pm2 (python interpreter for the sync)", "login caches "
        "profiles EX 3; the sync stamps last_seen with SET ... KEEPTTL",
        [Proc("login", "node/profilesync/api.mjs"),
         Proc("sync", "py/profile_sync.py", interpreter="python", env={"KEEP_TTL": "1"})],
        twin="profile-sync-drops-ttl"),
    App("profile-sync-drops-ttl", "node-redis + redis-py", "pm2 (python interpreter for the sync)", "the sync "
        "writes the profile back with a plain SET: the TTL is gone, profiles never expire",
        [Proc("login", "node/profilesync/api.mjs"), Proc("sync", "py/profile_sync.py", interpreter="python")],
        rule="ttl-cleared-by-set", culprit="sync", twin="profile-sync"),
    App("feed-ttl-shortened", "ioredis + redis-py", "pm2 (python interpreter for the ranker)", "the api caches "
        "feeds EX 30; the ranking worker ranks each new feed once: pushes a post and sets its own CACHE_TTL=2 on it "
        "(every feed expires 2 s after it was ranked)",
        [Proc("feeds", "node/feed/api.mjs"),
         Proc("ranker", "py/ranker.py", interpreter="python", env={"CACHE_TTL": "2"})],
        rule="ttl-shortened", culprit="ranker"),
    # --- a migration run by hand ----------------------------------------------------------------------------------
    App("carts-renamed", "ioredis + redis-py", "pm2 + a script run by hand", "a migration (not listed: nobody "
        "told the on-call) RENAMEs cart:<id> to v2:cart:<id> while the old storefront still uses cart:<id>",
        [Proc("storefront", "node/carts/storefront.mjs"),
         Proc("migration", argv=[PY, "migrate_carts.py"], listed=False, start_after=1.5)],
        rule="renamed-away", culprit="migration"),
    # --- memory full, noeviction ----------------------------------------------------------------------------------
    App("audit-oom", "node-redis + ioredis", "pm2", "an audit log LPUSHes 20 KB entries forever into a server "
        "with maxmemory 4mb noeviction: the api's session writes are refused with OOM",
        [Proc("api", "node/audit/api.mjs"), Proc("audit", "node/audit/audit.mjs")],
        rule="write-rejected", culprit="audit", server_args=["--maxmemory", "4mb", "--maxmemory-policy",
                                                              "noeviction"]),
    # --- a cache made before the capture, read under a wrong name ----------------------------------------------
    App("pricing", "redis-py", "pm2 (python interpreter)", "a price catalog caches 10,500 products at start and "
        "re-prices a few a second; the quote service reads product:<sku>",
        [Proc("catalog", "py/price_catalog.py", interpreter="python"),
         Proc("quotes", "py/pricing.py", interpreter="python", env={"PRODUCT_KEY": "product:{sku}"})],
        twin="pricing-key-misnamed"),
    App("pricing-key-misnamed", "redis-py", "pm2 (python interpreter)", "the quote service's PRODUCT_KEY is "
        "products:{sku} (copied from another service): every price it reads is missing, while product:<sku> was "
        "cached before anyone looked",
        [Proc("catalog", "py/price_catalog.py", interpreter="python"),
         Proc("quotes", "py/pricing.py", interpreter="python", env={"PRODUCT_KEY": "products:{sku}"})],
        rule="key-prefix-mismatch", culprit="quotes", twin="pricing"),
    # --- rq ---------------------------------------------------------------------------------------------------------
    App("rq-batches", "rq + redis-py", "rq worker", "messages appended to batch:<n> (EXPIRE 10); a flush job "
        "enqueued when the batch is complete reads and deletes it",
        [Proc("worker", argv=[PY, "-m", "rq.cli", "worker", "--url", "{url}", "batches"]),
         Proc("api", argv=[PY, "batches_api.py"], env={"FLUSH_WHEN": "complete"})],
        twin="rq-batches-flushed-early"),
    App("rq-batches-flushed-early", "rq + redis-py", "rq worker", "the flush job is enqueued when the batch "
        "opens: the worker deletes the batch while the api still appends (the incident that started redisprobe)",
        [Proc("worker", argv=[PY, "-m", "rq.cli", "worker", "--url", "{url}", "batches"]),
         Proc("api", argv=[PY, "batches_api.py"], env={"FLUSH_WHEN": "opened"})],
        rule="deleted-by-client", culprit="worker", twin="rq-batches"),
    App("rq-worker-other-db", "rq + redis-py", "rq worker", "the worker was started with --url .../1 (a "
        "copy-pasted command line); the api enqueues on db 0: nothing is ever flushed",
        [Proc("worker", argv=[PY, "-m", "rq.cli", "worker", "--url", "{url/1}", "batches"]),
         Proc("api", argv=[PY, "batches_api.py"], env={"FLUSH_WHEN": "complete"})],
        rule="different-db", culprit="worker", twin="rq-batches"),
    # --- Celery ------------------------------------------------------------------------------------------------------
    App("celery", "celery + redis-py", "celery worker (prefork, 2)", "orders as Celery tasks (Redis broker and "
        "result backend); each task stores a report with EXPIREAT now+1h",
        [Proc("worker", argv=[PY, "-m", "celery", "-A", "tasks", "worker", "--loglevel", "INFO",
                              "--concurrency", "2"], env={"TZ": "UTC"}),
         Proc("shop", argv=[PY, "shop_producer.py"], start_after=0.3)],
        twin="celery-worker-tz"),
    App("celery-chords", "celery + redis-py", "celery worker (prefork, 2)", "checkouts as Celery chords: 4 "
        "process_order tasks and a summarize callback (the Redis backend's chord counters)",
        [Proc("worker", argv=[PY, "-m", "celery", "-A", "tasks", "worker", "--loglevel", "INFO",
                              "--concurrency", "2"], env={"TZ": "UTC"}),
         Proc("checkout", argv=[PY, "checkout_producer.py"], start_after=0.3)]),
    App("celery-worker-tz", "celery + redis-py", "celery worker (prefork, 2)", "the worker host runs on "
        "TZ=Asia/Tokyo: EXPIREAT datetime.utcnow()+1h is 8 h in the past, every report is deleted at once",
        [Proc("worker", argv=[PY, "-m", "celery", "-A", "tasks", "worker", "--loglevel", "INFO",
                              "--concurrency", "2"], env={"TZ": "Asia/Tokyo"}),
         Proc("shop", argv=[PY, "shop_producer.py"], start_after=0.3)],
        rule="expire-in-past", culprit="worker", twin="celery"),
    App("celery-shared-connection", "celery + redis-py", "celery worker (prefork, 2)", "the tasks' client is "
        "single_connection_client=True, connected at import in the main process: both prefork children write "
        "on that one socket",
        [Proc("worker", argv=[PY, "-m", "celery", "-A", "tasks", "worker", "--loglevel", "INFO",
                              "--concurrency", "2"], env={"TZ": "UTC", "STATS_SINGLE_CONNECTION": "1"}),
         Proc("shop", argv=[PY, "shop_producer.py"], start_after=0.3)],
        rule="shared-connection", culprit="worker", twin="celery"),
    # --- Redis Cluster (3 primaries; monitor --url names one node and watches all) -------------------------------
    App("cluster-sessions", "ioredis Cluster", "pm2", "sessions on a cluster; the sessions report counts them with "
        "SCAN MATCH session:* on every primary (cluster.nodes('master'))",
        [Proc("web", "node/clustersessions/web.mjs"),
         Proc("report", "node/clustersessions/sweeper.mjs", env={"SWEEP": "every-primary"})],
        topology="cluster", twin="cluster-sessions-scan-one-node"),
    App("cluster-sessions-scan-one-node", "ioredis Cluster", "pm2", "the report still scans the one node "
        "REDIS_URL names (new Redis(REDIS_URL), as before the move to a cluster) and trusts its count: the sessions "
        "the two other primaries hold are never seen",
        [Proc("web", "node/clustersessions/web.mjs"),
         Proc("report", "node/clustersessions/sweeper.mjs", env={"SWEEP": "url"})],
        rule="scan-one-node", culprit="report", topology="cluster", twin="cluster-sessions"),
    App("cluster-queue", "ioredis Cluster", "pm2", "orders queued on a cluster; the worker's reliable queue LMOVEs "
        "{orders}:pending to {orders}:processing (one hash tag, one slot)",
        [Proc("shop", "node/clusterqueue/producer.mjs"), Proc("fulfilment", "node/clusterqueue/worker.mjs")],
        topology="cluster", twin="cluster-queue-cross-slot"),
    App("cluster-queue-cross-slot", "ioredis Cluster", "pm2", "the lists are orders:pending and "
        "orders:processing, without the hash tag: every LMOVE is refused with CROSSSLOT and orders pile up",
        [Proc("shop", "node/clusterqueue/producer.mjs", env={"QUEUE_PENDING": "orders:pending"}),
         Proc("fulfilment", "node/clusterqueue/worker.mjs",
              env={"QUEUE_PENDING": "orders:pending", "QUEUE_PROCESSING": "orders:processing"})],
        rule="cross-slot", culprit="fulfilment", topology="cluster", twin="cluster-queue"),
    App("cluster-profiles", "redis-py RedisCluster", "pm2 (python interpreter)", "profiles cached on a cluster "
        "by the api; the last-seen sync stamps them through RedisCluster (SET ... KEEPTTL on the key's node)",
        [Proc("accounts", "py/cluster_profiles_api.py", interpreter="python"),
         Proc("sync", "py/cluster_profiles_sync.py", interpreter="python", env={"CLUSTER_CLIENT": "1"})],
        topology="cluster", twin="cluster-profiles-unaware-client"),
    App("cluster-profiles-unaware-client", "redis-py RedisCluster + redis-py", "pm2 (python interpreter)", "the "
        "sync still uses redis.Redis on the node REDIS_URL names: every profile another node owns is refused with "
        "MOVED and never stamped",
        [Proc("accounts", "py/cluster_profiles_api.py", interpreter="python"),
         Proc("sync", "py/cluster_profiles_sync.py", interpreter="python")],
        rule="cluster-unaware-client", culprit="sync", topology="cluster", twin="cluster-profiles"),
]

TODAY: dict[str, str] = {
    # bug apps the tool gets wrong
    "pricing-key-misnamed": "with --source monitor, silent: every product was cached before the capture, beyond "
                            "the 10,000 keys the baseline reads, and MONITOR shows no reply, so a read of "
                            "products:<sku> is of unknown state, never a miss (named with --source wire)",
}
SOMETIMES: set[str] = set()
"""Apps whose wrong verdict today depends on timing (non-strict xfail: a fix cannot be forced to show)."""

WIRE = ["audit-oom", "pricing", "pricing-key-misnamed"]
"""Apps also run with `monitor --source wire`: the bug apps MONITOR cannot name for lack of replies (or names only
by inference: the refused writes) and their twins. The wire capture needs root or CAP_NET_RAW."""

TODAY_WIRE: dict[str, str] = {}
"""What today's tool says instead with `--source wire`, where it gets a WIRE app wrong."""

for _app in APPS:
    _app.today = TODAY.get(_app.name, "")
    _app.sometimes = _app.name in SOMETIMES

BY_NAME = {app.name: app for app in APPS}
