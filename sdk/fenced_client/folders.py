"""The folders reference type through the clients: an example of a typed wrapper over ``send``.

The clients speak the generic API (``send``, ``append``, ``read``, ``get``); a team wraps its
own commands the same way::

    folders = Folders(FencedClient(url))
    folders.create("f1", "Inbox")
    folders.update("f1", "Archive", expected_version=1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fenced_client.models import CommandResult, Resource

if TYPE_CHECKING:
    from fenced_client.aio import AsyncFencedClient
    from fenced_client.client import FencedClient

FOLDERS = "folders"


def _create_data(name: str, parent_id: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name}
    if parent_id is not None:
        data["parent_id"] = parent_id
    return data


class Folders:
    """The folders commands (Create, Update, Destroy) over a :class:`FencedClient`."""

    def __init__(self, client: FencedClient) -> None:
        self.client = client

    def create(self, folder_id: str, name: str, parent_id: str | None = None, *,
               idempotency_key: str | None = None) -> CommandResult:
        return self.client.send(FOLDERS, folder_id, "Create", _create_data(name, parent_id), None, idempotency_key)

    def update(self, folder_id: str, name: str, expected_version: int | None = None, *,
               idempotency_key: str | None = None) -> CommandResult:
        return self.client.send(FOLDERS, folder_id, "Update", {"name": name}, expected_version, idempotency_key)

    def destroy(self, folder_id: str, expected_version: int | None = None, *,
                idempotency_key: str | None = None) -> CommandResult:
        return self.client.send(FOLDERS, folder_id, "Destroy", {}, expected_version, idempotency_key)

    def get(self, folder_id: str) -> Resource:
        return self.client.get(FOLDERS, folder_id)


class AsyncFolders:
    """The folders commands (Create, Update, Destroy) over an :class:`AsyncFencedClient`."""

    def __init__(self, client: AsyncFencedClient) -> None:
        self.client = client

    async def create(self, folder_id: str, name: str, parent_id: str | None = None, *,
                     idempotency_key: str | None = None) -> CommandResult:
        return await self.client.send(FOLDERS, folder_id, "Create", _create_data(name, parent_id), None,
                                      idempotency_key)

    async def update(self, folder_id: str, name: str, expected_version: int | None = None, *,
                     idempotency_key: str | None = None) -> CommandResult:
        return await self.client.send(FOLDERS, folder_id, "Update", {"name": name}, expected_version,
                                      idempotency_key)

    async def destroy(self, folder_id: str, expected_version: int | None = None, *,
                      idempotency_key: str | None = None) -> CommandResult:
        return await self.client.send(FOLDERS, folder_id, "Destroy", {}, expected_version, idempotency_key)

    async def get(self, folder_id: str) -> Resource:
        return await self.client.get(FOLDERS, folder_id)
