"""fenced: a consistent event store on Apache Kafka.

The server, by layer (the protocol itself, wire format, consumer rule and decider
interface, is the client package's: :mod:`fenced_client`):

- :mod:`service.api`: the HTTP API (routes, authentication, limits, problem answers);
- :mod:`service.write`: the write path (the writer, token epochs);
- :mod:`service.read`: the read side (projector, projection, log barrier, replays);
- :mod:`service.infra`: Kafka and Redis clients;
- :mod:`service.app`, :mod:`service.cli`: how the processes are put together and started.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fenced")
except PackageNotFoundError:  # a checkout that was not installed
    __version__ = "0+unknown"
