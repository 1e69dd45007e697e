"""Delivery for push channels (Zalo OA, Zalo Bot, Telegram, Messenger): webhook → queue → engine → outbox → provider.

The path of one message, and the guarantee each step gives:

1. **Webhook** (``bot.channels.routes``): reads the raw body once, ``adapter.verify`` (forged → 401, nothing
   recorded; authentic but too old → 200, dropped), ``adapter.parse`` (→ 400 when unreadable), then
   :meth:`Delivery.record` inserts each event as an unprocessed ``inbound_messages`` row, unique on
   (channel, sender, delivery id), and commits. Only then does it answer 200: an event is never acknowledged
   before it is durable, and a redelivery finds the row and is dropped. The insert never waits on a person
   being processed, and on PostgreSQL it has a deadline (``WEBHOOK_DB_TIMEOUT_MS``); if it fails or times
   out the webhook answers 503 and the provider redelivers later. (We chose 503 over buffering the event
   somewhere less durable: every provider retries, and an event in Redis or a local file could be lost.)
2. **Inbound processing** (:func:`bot.pipeline.process_pending`): per person, oldest pending message first,
   under the identity row lock: engine step, answers, state, replies into the outbox and the row marked
   processed, in one transaction. Any number of threads, processes or RQ jobs can work at once; each message
   is processed exactly once, in order. Telegram button taps are then acknowledged.
3. **Outbox** (:mod:`bot.delivery.outbox`): heads of per-person queues are leased, sent, and their result
   recorded; at-least-once, in ``seq`` order per person, with backoff, windows and unreachability handled.

Work reaches a worker in one of two ways: the in-process worker thread (default; :mod:`bot.delivery.worker`)
or, with ``REDIS_URL``, RQ jobs (:mod:`bot.delivery.jobs`). ``flask delivery-worker`` runs the loop in the
foreground for deployments that keep web and worker processes apart. Settings: :mod:`bot.delivery.settings`.
"""

from __future__ import annotations

from bot.delivery.service import EXTENSION_KEY, Delivery, get_delivery, init_app
from bot.delivery.settings import DeliverySettings

__all__ = ["EXTENSION_KEY", "Delivery", "DeliverySettings", "get_delivery", "init_app"]
