"""A private fenced stack on free ports for load runs: Kafka, Redis, the projector, 2 API replicas.

Unlike ``make up`` it writes nothing under the repository (no ``.run/`` pid files): its
data lives in a temporary folder that is removed when it stops, so it never disturbs a
stack someone else runs.

    python -m loadtests.stack            # prints the API URLs, runs until Ctrl-C
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.stack import Stack, servers


@contextmanager
def private_stack(*, partitions: int = 12, ack_mode: str = "verified") -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="fenced-loadtest-"))
    try:
        with servers(root) as (kafka, redis):
            stack = Stack(root / "stacks", kafka, redis, ack_mode=ack_mode,
                          extra_env={"FENCED_LEASE_TTL_MS": "5000", "FENCED_PARTITIONS": str(partitions),
                                     "FENCED_FAULT_INJECTION": "false"})
            try:
                yield stack.start()
            finally:
                stack.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with private_stack() as stack:
        print(" ".join(stack.urls), flush=True)
        print(f"kafka {stack.kafka.bootstrap} topic {stack.settings.topic('folders')}", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
