"""Create the app's topics on a real Kafka broker (``tweetwatch topics``, docker-compose's
topic-init step). The worker never declares topics itself (``topic_allow_declare=False``)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.app import topic_names
from stream.settings import Settings


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
            await admin.create_topics([
                NewTopic(name, settings.topic_partitions, settings.topic_replication)
                for name in missing
            ])
        return {name: name in missing for name in wanted}
    finally:
        await admin.close()
