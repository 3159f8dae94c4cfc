"""trapline test harness: real servers on free loopback ports in temporary folders.

Usage (PYTHONPATH=<repo>/tests):

    from harness import PostgresServer, RedisServer, SshServer, ZabbixStack

    with ZabbixStack() as zbx:
        ids = zbx.create_trapper_host("web-1", [("cpu.load", 0)])
        zbx.send("web-1", "cpu.load", 0.5)
        rows = zbx.wait_for_history(ids["cpu.load"], count=1)

See servers.py for the full API.
"""

from .http import api_call  # noqa: F401
from .servers import (  # noqa: F401
    HOST,
    HarnessError,
    PostgresServer,
    PsqlError,
    RedisError,
    RedisServer,
    Server,
    ServerError,
    SshServer,
    ZabbixApiError,
    ZabbixStack,
    HISTORY_TABLES,
    cached_template_datadir,
    cleanup_all,
    default_cache_dir,
    free_port,
    live_servers,
    make_base_dir,
    port_is_free,
    processes_in_groups,
    pg_bin_dir,
    redis_command,
    sql_literal,
    wait_port_free,
)

__all__ = [
    "api_call",
    "HOST",
    "HarnessError",
    "PostgresServer",
    "PsqlError",
    "RedisError",
    "RedisServer",
    "Server",
    "ServerError",
    "SshServer",
    "ZabbixApiError",
    "ZabbixStack",
    "HISTORY_TABLES",
    "cached_template_datadir",
    "cleanup_all",
    "default_cache_dir",
    "free_port",
    "live_servers",
    "make_base_dir",
    "port_is_free",
    "processes_in_groups",
    "pg_bin_dir",
    "redis_command",
    "sql_literal",
    "wait_port_free",
]
