"""Uniform writes over many folders: each task picks a folder of the pool at random and
creates it (first time) or renames it. Contention is rare: this measures throughput.

    LOADTEST_FOLDERS (default 10000): size of the pool.
"""

from __future__ import annotations

from locust import task

from loadtests.common import RUN, FencedUser, env_int, scenario

scenario("uniform")
FOLDERS = env_int("LOADTEST_FOLDERS", 10_000)
created: set[int] = set()


class UniformWriter(FencedUser):
    @task
    def write(self) -> None:
        n = self.rng.randrange(FOLDERS)
        folder = f"{RUN}-u{n}"
        if n in created:
            self.command(folder, "Update", {"name": f"name-{self.rng.random():.6f}"})
        elif self.command(folder, "Create", {"name": "new"}) in (201, 409):
            created.add(n)
