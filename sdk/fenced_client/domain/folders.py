"""The reference resource type: folders (Create, Update, Destroy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fenced_client.domain import (
    AlreadyExists,
    Command,
    Decider,
    Gone,
    InvalidCommand,
    InvalidEvent,
    NotFound,
    State,
    register,
)
from fenced_client.wire import NewEvent

MAX_NAME = 255
INITIAL: State = {"exists": False, "destroyed": False, "name": None, "parent_id": None}


def _name(data: Mapping[str, Any]) -> str:
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise InvalidCommand(f"'name' must be a non-empty string of at most {MAX_NAME} characters")
    return name


def decide(command: Command, state: State) -> Sequence[NewEvent]:
    data = command.data
    if state["destroyed"]:
        raise Gone("the folder was destroyed")
    if command.name == "Create":
        if state["exists"]:
            raise AlreadyExists("the folder already exists")
        parent = data.get("parent_id")
        if parent is not None and not isinstance(parent, str):
            raise InvalidCommand("'parent_id' must be a string or null")
        return [NewEvent("FolderCreated", {"name": _name(data), "parent_id": parent})]
    if not state["exists"]:
        raise NotFound("the folder does not exist")
    if command.name == "Update":
        return [NewEvent("FolderUpdated", {"name": _name(data)})]
    if command.name == "Destroy":
        return [NewEvent("FolderDestroyed", {})]
    raise InvalidCommand(f"unknown command {command.name!r}: use Create, Update or Destroy")


def evolve(state: State, event_type: str, data: Mapping[str, Any]) -> State:
    if state["destroyed"]:
        raise InvalidEvent(f"{event_type} after FolderDestroyed")
    if event_type == "FolderCreated":
        if state["exists"]:
            raise InvalidEvent("FolderCreated on an existing folder")
        return {**state, "exists": True, "name": data.get("name"), "parent_id": data.get("parent_id")}
    if not state["exists"]:
        raise InvalidEvent(f"{event_type} before FolderCreated")
    if event_type == "FolderUpdated":
        return {**state, "name": data.get("name")}
    if event_type == "FolderDestroyed":
        return {**state, "destroyed": True}
    raise InvalidEvent(f"unknown event type {event_type!r}")


FOLDERS = register(Decider(
    type="folders",
    initial=INITIAL,
    decide=decide,
    evolve=evolve,
    exists=lambda s: bool(s["exists"]),
    destroyed=lambda s: bool(s["destroyed"]),
    commands=frozenset({"Create", "Update", "Destroy"}),
))
