"""Will the Redis we use keep what it is given? The production settings of SECURITY.md, checked.

A queued job or a dedupe-ledger entry that Redis evicts, or loses in a restart, is an event
lost or applied twice; so `lifecycle status` shows these findings. Managed services often
refuse `CONFIG GET`: then the finding says so, and the settings must be checked when the
service is provisioned.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.exceptions import ResponseError


def _config(conn: redis.Redis, name: str) -> str | None:
    """The value of one CONFIG setting, or None when the server does not tell."""
    try:
        values = conn.config_get(name)
    except ResponseError:  # CONFIG disabled or renamed (managed services)
        return None
    raw = values.get(name) if isinstance(values, dict) else None
    return raw.decode() if isinstance(raw, bytes) else raw


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redis_findings(conn: redis.Redis, url: str) -> dict[str, Any]:
    """{"maxmemory_policy", "appendonly", "appendfsync", "tls", "password", "problems": [...]}.

    Raises RedisError when Redis does not answer."""
    parts = urlsplit(url)
    policy, aof, fsync = (_config(conn, n) for n in ("maxmemory-policy", "appendonly", "appendfsync"))
    problems = []
    if policy is None or aof is None:
        problems.append("Redis does not show its CONFIG (a managed service?): make sure it runs with "
                        "maxmemory-policy noeviction and AOF persistence")
    if policy not in (None, "noeviction"):
        problems.append(f"maxmemory-policy is {policy}: Redis may evict queued jobs and dedupe entries "
                        "(events lost or applied twice); set noeviction")
    if aof not in (None, "yes"):
        problems.append("AOF persistence is off: a Redis restart loses queued jobs and acknowledged "
                        "events; set appendonly yes (appendfsync everysec or always)")
    remote = not _is_loopback(parts.hostname or "127.0.0.1") and parts.scheme != "unix"
    tls, password = parts.scheme == "rediss", bool(parts.password)
    if remote and not tls:
        problems.append("REDIS_URL is not TLS (redis://) to a remote host: use rediss://")
    if remote and not password:
        problems.append("REDIS_URL has no password: use an ACL user and password")
    return {"maxmemory_policy": policy, "appendonly": aof, "appendfsync": fsync, "tls": tls,
            "password": password, "problems": problems}
