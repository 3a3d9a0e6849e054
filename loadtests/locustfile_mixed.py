"""Mixed reads and writes over a pool of folders: for each write, three reads of a folder's
state and one of its history. Folders are created lazily by the writes.

    LOADTEST_FOLDERS (default 2000): size of the pool.
"""

from __future__ import annotations

from locust import task

from loadtests.common import RUN, FencedUser, env_int, scenario

scenario("mixed")
FOLDERS = env_int("LOADTEST_FOLDERS", 2_000)
created: list[int] = []
known: set[int] = set()


class MixedUser(FencedUser):
    @task(1)
    def write(self) -> None:
        n = self.rng.randrange(FOLDERS)
        folder = f"{RUN}-m{n}"
        if n in known:
            self.command(folder, "Update", {"name": f"name-{self.rng.random():.6f}"})
        elif self.command(folder, "Create", {"name": "new"}) in (201, 409) and n not in known:
            known.add(n)
            created.append(n)

    @task(3)
    def read_state(self) -> None:
        if not created:
            return self.write()
        self.read(f"/v1/folders/{RUN}-m{self.rng.choice(created)}", "/v1/folders/[id]")

    @task(1)
    def read_history(self) -> None:
        if not created:
            return self.write()
        self.read(f"/v1/folders/{RUN}-m{self.rng.choice(created)}/events?limit=100", "/v1/folders/[id]/events")
