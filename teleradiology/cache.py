"""The cache on the Redis server the Celery broker uses."""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache


class SharedRedisCache(RedisCache):
    """Django's Redis cache in a Redis database it shares with the Celery broker:
    ``clear()`` removes the cache's own keys (its KEY_PREFIX) only, where Django's
    would FLUSHDB and take the broker's queues and bindings with it."""

    def clear(self) -> None:
        client = self._cache.get_client(None, write=True)
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{self.key_prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
