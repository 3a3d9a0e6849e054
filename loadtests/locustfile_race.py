"""Update against Destroy on fresh folders, the race fenced exists for.

Each task creates a folder, then sends Update and Destroy at the same time (two
greenlets on the user's connection pool), then reads the folder back and checks what the
answers promised: the folder is destroyed, at version 3 if the Update was accepted (it
went first) and at version 2 if it was told 410. Outcomes go to the summary's
``outcomes``; ``violations`` must stay 0.
"""

from __future__ import annotations

import gevent  # type: ignore[import-untyped]  # locust runs on gevent, which has no stubs
from locust import task

from loadtests.common import RUN, TALLY, FencedUser, scenario

scenario("race")
TALLY.extra["violations"] = 0


class Racer(FencedUser):
    concurrency = 4

    @task
    def race(self) -> None:
        folder = f"{RUN}-race{self.number}-{self.rng.randrange(10**9)}"
        if self.command(folder, "Create", {"name": "racing"}) != 201:
            TALLY.extra["create_failed"] += 1
            return
        update = gevent.spawn(self.command, folder, "Update", {"name": "renamed"})
        destroy = gevent.spawn(self.command, folder, "Destroy")
        gevent.joinall([update, destroy])
        u, d = update.value, destroy.value
        if d != 201 or u not in (201, 410):
            TALLY.extra[f"undecided_update_{u}_destroy_{d}"] += 1
            return
        TALLY.extra["update_first" if u == 201 else "destroy_first"] += 1
        status, body = self.read(f"/v1/folders/{folder}", "/v1/folders/[id]")
        if status != 200:
            TALLY.extra[f"read_back_{status}"] += 1
            return
        if not body["destroyed"] or body["version"] != (3 if u == 201 else 2):
            TALLY.extra["violations"] += 1
