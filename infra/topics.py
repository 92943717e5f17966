"""Create the app's topics on a real Kafka broker (``tweetwatch topics``, docker-compose's
topic-init step). The worker never declares topics itself (``topic_allow_declare=False``)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.app import topic_names
from stream.settings import Settings

_TOPIC_ALREADY_EXISTS = 36  # a concurrent topic-init created it: fine


async def create_topics(settings: Settings) -> dict[str, bool]:
    """Create missing topics; returns each topic's name and whether it was created now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers,
                                client_id=f"{settings.app_id}-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = topic_names(settings)
        missing = [name for name in wanted if name not in existing]
        if missing:
            cluster = await admin.describe_cluster()
            if cluster["controller_id"] not in {b["node_id"] for b in cluster["brokers"]}:
                raise RuntimeError(
                    "the broker names no controller, so it cannot create topics (the embedded "
                    f"broker cannot; create {', '.join(missing)} through its API)")
            response = await admin.create_topics([
                NewTopic(name, settings.topic_partitions, settings.topic_replication)
                for name in missing
            ])
            failed = [f"{topic}: {(rest[0] if rest else None) or f'error code {code}'}"
                      for topic, code, *rest in response.topic_errors
                      if code not in (0, _TOPIC_ALREADY_EXISTS)]
            if failed:
                raise RuntimeError("; ".join(failed))
        return {name: name in missing for name in wanted}
    finally:
        await admin.close()
