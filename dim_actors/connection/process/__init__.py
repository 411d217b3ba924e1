"""The connection process: owns the gateway socket, in its own OS process.

Nothing in the supervisor process can pause it. Three threads, none waiting on another:
- the socket thread connects, handshakes, reads frames and hands them to the uplink;
- the uplink thread writes events to the pipe (if the supervisor stops draining, only it waits);
- the main thread reads commands from the pipe and sends frames;
plus a keepalive thread that pings, detects a silent gateway and expires unanswered
requests, and a watchdog thread that ends the process when one of the others is stuck
(ThreadWatch).

Its modules, each with one job (docs/connection.md, "Code layout"): main (the entry
point and its threads), options, connection (GatewayConnection, which composes the
others), sessions, handshake, correlation (requests and their answers), catchup,
outbox_pump, keepalive, sender (the paced sender), seqs (gaps and duplicates), reading
(the fields read from frames), watch (the watchdog).
"""

from dim_actors.connection.process.connection import GatewayConnection
from dim_actors.connection.process.main import main
from dim_actors.connection.process.options import ConnectionOptions
from dim_actors.connection.process.watch import EXIT_HUNG

__all__ = ["EXIT_HUNG", "ConnectionOptions", "GatewayConnection", "main"]
