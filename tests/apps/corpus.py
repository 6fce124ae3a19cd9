"""The corpus: every app, its defect (or none), the rule and culprit expected, and what today's tool says."""

from __future__ import annotations

from tests.apps.harness import App, Proc

APPS: list[App] = [
    App("bullmq", "bullmq", "pm2", "BullMQ producer and worker on one queue, both with prefix 'mail'",
        [Proc("api", "node/bullmq/producer.mjs", env={"BULL_PREFIX": "mail"}),
         Proc("mailer", "node/bullmq/worker.mjs", env={"BULL_PREFIX": "mail"})],
        twin="bullmq-prefix"),
    App("bullmq-prefix", "bullmq", "pm2", "the worker's env lacks BULL_PREFIX: it waits on bull:emails:*, the "
        "producer writes mail:emails:*",
        [Proc("api", "node/bullmq/producer.mjs", env={"BULL_PREFIX": "mail"}),
         Proc("mailer", "node/bullmq/worker.mjs")],
        rule="key-prefix-mismatch", culprit="mailer", twin="bullmq"),
]

BY_NAME = {app.name: app for app in APPS}
