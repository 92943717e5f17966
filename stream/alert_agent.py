"""The alert agent: negative entity mentions in, alerts out (topic + ``alerts`` table).

Per message on the negative-entity topic (keyed by entity key, so one entity's mentions arrive
in order on one partition). Each entity key has a lane (``stream.lanes``): one entity's
mentions are handled one at a time and in order, while other entities' mentions go on beside
it, so one slow LLM call delays only its own entity. For each message:

1. validate the record (a bad one goes to the dead-letter topic with the reason, as does one
   whose handling fails for any reason but an outage: see ``stream.faults``);
2. compute the deterministic ``alert_id`` (entity key + window) and stop if it is stored
   already -- a redelivery or a restart never calls the LLM or publishes twice;
3. apply the policy: discovered (unwatched) entities only with ``alert_scope=all``; the
   cooldown (``stream.alerting``: this worker's memory of the alerts it stored, else the
   alerts table); then the spike rules against the entity's own baseline (``stream.spikes``);
4. write the text: the LLM when configured and healthy, else the template (``stream.prompts``);
5. in one transaction: insert the alert (``ON CONFLICT DO NOTHING``), publish it to the alerts
   topic and wait for the broker's acknowledgement, commit. Only then is the message's offset
   acknowledged (the same ``incref`` discipline as the analyze agent), so a crash before the
   commit redelivers the mention and nothing is lost.

The LLM call is async with a timeout, retries and a circuit breaker, so a slow or dead
endpoint costs at most ``llm_timeout_s`` x (retries + 1) per alert until the breaker opens,
and then nothing: alerts go out with the template text.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import faust
from faust.types import EventT, StreamT
from faust.types.tuples import Message
from sqlalchemy.ext.asyncio import AsyncEngine

from stream import metrics
from stream.alerting import (
    AlertPolicy,
    alert_exists,
    alert_id_for,
    cooldown_blocker,
    insert_alert,
    window_for,
    within_cooldown,
)
from stream.faults import failure_reason, retry_outages
from stream.lanes import InOrderAcks, KeyedLanes, Ticket
from stream.llm import ChatClient
from stream.prompts import AlertContext, write_alert
from stream.records import (
    AlertRecord,
    InvalidNegativeRecord,
    NegativeMention,
    dead_letter_record,
    parse_negative_record,
)
from stream.settings import Settings
from stream.spikes import SpikeThresholds, judge, spike_stats
from stream.storage import create_engine
from stream.webhook import AlertWebhook
from stream.worker_guard import crash_worker

if TYPE_CHECKING:
    from stream.topics import Topics

log = logging.getLogger(__name__)

_FIRED_CACHE_KEYS = 50_000
# Negative mentions taken from the topic but not yet handled, across all entities' lanes.
_MAX_PENDING = 1000


class AlertWorker:
    """What the agent does with one negative-entity message, apart from Faust's ack."""

    def __init__(self, settings: Settings, topics: Topics, engine: AsyncEngine,
                 client: ChatClient | None) -> None:
        self.settings = settings
        self.topics = topics
        self.engine = engine
        self.client = client
        self.policy = AlertPolicy.from_settings(settings)
        # Spike thresholds by kind of entity: watched (True) or discovered (False).
        self.thresholds = {watched: SpikeThresholds.from_settings(settings, watched)
                           for watched in (True, False)}
        # Window end of the latest alert this worker stored, per entity key (LRU): a cache of
        # the alerts table that spares hot entities' mentions in the cooldown any query.
        self._fired: OrderedDict[str, datetime] = OrderedDict()

    def _remember(self, key: str, end: datetime) -> None:
        self._fired[key] = max(end, self._fired.get(key, end))
        self._fired.move_to_end(key)
        while len(self._fired) > _FIRED_CACHE_KEYS:
            self._fired.popitem(last=False)

    async def handle(self, message: Message) -> AlertRecord | None:
        """Process one message; returns the alert it published, if any.

        Outages (database, broker) are waited out; any other failure is the message's own
        (the poison rule, see stream.faults): it goes to the dead-letter topic with the
        exception as the reason, and the next message is handled as usual."""
        try:
            mention = parse_negative_record(message.value)
        except InvalidNegativeRecord as exc:
            log.warning("negative-entity record to the DLQ: %s", exc)
            await self._dead_letter(message, str(exc))
            return None
        try:
            return await retry_outages(lambda: self._evaluate(mention), "alert database access")
        except Exception as exc:
            reason = failure_reason(exc)
            log.error("negative-entity record %s[%d]@%d to the DLQ: %s", message.topic,
                      message.partition, message.offset, reason, exc_info=exc)
            await self._dead_letter(message, reason)
            return None

    async def _dead_letter(self, message: Message, reason: str) -> None:
        record = dead_letter_record(message.value, reason, message.topic, message.partition,
                                    message.offset, datetime.now(UTC))

        async def send() -> None:
            await (await self.topics.dlq.send(key=message.key, value=record.to_json(),
                                              force=True))

        await retry_outages(send, "sending a dead letter")
        metrics.dead_letter(reason, agent="alert")

    async def _evaluate(self, mention: NegativeMention) -> AlertRecord | None:
        watched = mention.watch is not None
        if not watched and self.settings.alert_scope == "watched":
            return None  # discovered entities alert only with TWEETWATCH_ALERT_SCOPE=all
        thresholds = self.thresholds[watched]
        start, end = window_for(self.policy, mention.created_at)
        key = mention.entity_key
        alert_id = alert_id_for(key, start, end)
        last = self._fired.get(key)
        if last is not None and within_cooldown(self.policy, last, end):
            return None  # silenced by an alert this worker stored: no database round trip
        async with self.engine.connect() as conn:
            if await alert_exists(conn, alert_id):
                log.debug("alert %s already stored; not generated again", alert_id)
                return None
            blocker = await cooldown_blocker(conn, self.policy, key, end)
            if blocker is not None:
                log.debug("no alert for %r at %s: cooldown after %s", key, end, blocker)
                return None
            stats = await spike_stats(conn, thresholds, key, end,
                                      (mention.tweet_id, mention.text))
        decision = judge(thresholds, stats)
        if not decision.fire:
            log.debug("no alert for %r at %s: %s", mention.entity_key, end, decision.reason)
            return None
        name = mention.watch or mention.entity
        context = AlertContext(
            # The type word only when the user gave it: the model's types are too often
            # wrong to print ("the place Starbucks").
            entity=name, entity_key=mention.entity_key,
            type=mention.type if mention.type_source == "watchlist" else "",
            window_start=start, window_end=end, negative_mentions=stats.current.negative,
            mentions=stats.current.tweets, tweets=stats.texts,
        )
        written = await write_alert(self.client, context, two_stage=self.settings.llm_two_stage)
        alert = AlertRecord(
            alert_id=alert_id,
            entity=name,
            entity_key=mention.entity_key,
            type=mention.type,
            window_start=start,
            window_end=end,
            negative_mentions=stats.current.negative,
            mentions=stats.current.tweets,
            tweet_ids=stats.tweet_ids,
            text=written.text,
            generator=written.generator,
            model=written.model,
            created_at=datetime.now(UTC),
            watch=mention.watch,
            reason={"rule": decision.rule, "text": decision.reason, **decision.figures},
            examples=stats.texts,
        )
        async with self.engine.begin() as conn:
            if not await insert_alert(conn, alert):
                return None
            # Delivery confirmed before the commit: a crash in between re-sends the same
            # alert_id (at-least-once) rather than losing it.
            await (await self.topics.alerts.send(key=key.encode("utf-8"),
                                                 value=alert.to_json(), force=True))
        self._remember(key, end)
        log.info("alert %s (%s): %s", alert_id, written.generator, decision.reason)
        return alert


def register_alert_agent(app: faust.App, settings: Settings, topics: Topics) -> None:
    """Add the alert agent to ``app`` (consumes the negative-entity topic)."""
    engine = create_engine(settings.database_url)
    if not settings.llm_base_url:
        log.info("no LLM endpoint configured (TWEETWATCH_LLM_BASE_URL): alerts use the "
                 "template text")

    async def alert(stream: StreamT) -> None:
        # The HTTP session must be created inside the worker's event loop.
        worker = AlertWorker(settings, topics, engine, ChatClient.from_settings(settings))
        metrics.watch_llm(worker.client)
        webhook = AlertWebhook.from_settings(settings)  # delivery off the agent's path

        acks: InOrderAcks[EventT] = InOrderAcks(lambda event: event.message.ack(app.consumer))

        async def handle(ticket: Ticket[EventT]) -> None:
            alert = await worker.handle(ticket.item.message)
            acks.finish(ticket)  # only after the commit, and in offset order: see InOrderAcks
            if alert is not None:
                metrics.alert_fired(alert)
                if webhook is not None:
                    webhook.offer(alert)  # never waits: a bounded queue

        lanes: KeyedLanes[Ticket[EventT]] = KeyedLanes(handle, max_pending=_MAX_PENDING)
        try:
            async for event in stream.events():
                event.message.incref()
                try:
                    await lanes.submit(event.message.key, acks.take(event.message.tp, event))
                except Exception as exc:
                    # Only a dead letter that cannot be sent gets here. Stop the worker
                    # (exit status 1) rather than leave a dead agent in a live process: the
                    # message is not acknowledged and comes again.
                    log.exception("alert agent failed; stopping the worker")
                    await crash_worker(app, exc)
                    raise
        finally:
            await lanes.close()
            if webhook is not None:
                await webhook.close()
            if worker.client is not None:
                await worker.client.close()

    app.agent(topics.negative, name="tweetwatch.alert")(alert)
