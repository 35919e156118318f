"""Route connections by name without DNS, for a client run straight at the fake Salesforce.

GS_CONNECT_TO="host:port=ip:port,..." (set by testkit's direct runners): urllib3 (under
requests and simple-salesforce) then dials ip:port for host:port, keeping the name for SNI,
certificate checks and Host, like grantshift's [upstream.connect_to] or curl --connect-to. A
name not listed is refused, so nothing leaves loopback. Unset: nothing changes (through a
proxy, HTTPS_PROXY does the routing).
"""

import os

import urllib3.util.connection as connection


def _routes():
    routes = {}
    for entry in filter(None, os.environ.get("GS_CONNECT_TO", "").split(",")):
        name, addr = entry.split("=")
        host, port = name.rsplit(":", 1)
        ip, to_port = addr.rsplit(":", 1)
        routes[(host.lower(), int(port))] = (ip, int(to_port))
    return routes


ROUTES = _routes()

if ROUTES:
    _dial = connection.create_connection

    def _create_connection(address, *args, **kwargs):
        host, port = address
        try:
            target = ROUTES[(host.lower(), int(port))]
        except KeyError:
            raise OSError(f"GS_CONNECT_TO has no route for {host}:{port}") from None
        return _dial(target, *args, **kwargs)

    connection.create_connection = _create_connection
