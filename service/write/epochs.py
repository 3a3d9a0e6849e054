"""Token epochs: derived from the log, raised whenever Redis is found without one.

An epoch is ``offset + 1`` of a record appended to the ``<prefix>_epochs`` topic, so a new
epoch is always above every earlier one, even if Redis lost everything it knew.
"""

from __future__ import annotations

import logging

from locks import Leases
from service.infra.kafka import Appender

log = logging.getLogger("fenced.epochs")


class Epochs:
    def __init__(self, leases: Leases, appender: Appender) -> None:
        self.leases = leases
        self.appender = appender

    async def current(self) -> int:
        epoch = await self.leases.epoch()
        return epoch if epoch is not None else await self.bootstrap()

    async def bootstrap(self, reason: str = "redis had no token epoch") -> int:
        """Start a higher epoch from the log (Redis is new or lost its data, or a rebuild)."""
        candidate = await self.appender.append_epoch(self.leases.replica)
        epoch = await self.leases.set_epoch(candidate)
        log.warning("%s: epoch %d begins (from the log)", reason, epoch)
        return epoch
