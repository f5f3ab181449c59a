"""The Redis engine: one Lua call decides a lookup, on the server's clock (docs/redis.md)."""

from nirguard._redis.engine import DEFAULT_DEADLINE, RedisEngine

__all__ = ["DEFAULT_DEADLINE", "RedisEngine"]
