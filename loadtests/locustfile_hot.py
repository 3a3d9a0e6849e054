"""Every user writes to the same few folders: the per-folder lease is the bottleneck, so
this measures contention (queueing behind the lease, 503 Busy) rather than throughput.

    LOADTEST_FOLDERS (default 4): how many hot folders.
"""

from __future__ import annotations

from locust import task

from loadtests.common import RUN, FencedUser, env_int, scenario

scenario("hot")
FOLDERS = env_int("LOADTEST_FOLDERS", 4)
created: set[int] = set()


class HotWriter(FencedUser):
    @task
    def write(self) -> None:
        n = self.rng.randrange(FOLDERS)
        folder = f"{RUN}-hot{n}"
        if n in created:
            self.command(folder, "Update", {"name": f"name-{self.rng.random():.6f}"})
        elif self.command(folder, "Create", {"name": "hot"}) in (201, 409):
            created.add(n)
