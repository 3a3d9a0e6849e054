"""The folders decider (sdk/fenced_client/domain/folders.py): decide and evolve."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fenced_client import domain
from fenced_client.domain import (
    AlreadyExists,
    Command,
    Gone,
    InvalidCommand,
    InvalidEvent,
    NotFound,
    Rejection,
    State,
)
from fenced_client.domain.folders import FOLDERS, INITIAL, MAX_NAME, decide, evolve
from fenced_client.wire import NewEvent

FAST = settings(max_examples=200, deadline=None, database=None)

CREATED, UPDATED, DESTROYED = "FolderCreated", "FolderUpdated", "FolderDestroyed"

NEW: State = INITIAL
EXISTING: State = {"exists": True, "destroyed": False, "name": "Inbox", "parent_id": "root"}
DESTROYED_STATE: State = {"exists": True, "destroyed": True, "name": "Inbox",
                          "parent_id": "root"}
STATES = {"new": NEW, "existing": EXISTING, "destroyed": DESTROYED_STATE}


# --------------------------------------------------------------------------------------------
# Registration and the rejection classes
# --------------------------------------------------------------------------------------------

def test_folders_is_registered() -> None:
    assert domain.get("folders") is FOLDERS
    assert domain.registered()["folders"] is FOLDERS
    assert domain.get("no-such-type") is None
    assert FOLDERS.type == "folders"
    assert FOLDERS.commands == frozenset({"Create", "Update", "Destroy"})
    assert FOLDERS.initial == {"exists": False, "destroyed": False, "name": None,
                               "parent_id": None}


@pytest.mark.parametrize(("state", "exists", "destroyed"), [
    (NEW, False, False), (EXISTING, True, False), (DESTROYED_STATE, True, True)])
def test_exists_and_destroyed(state: State, exists: bool, destroyed: bool) -> None:
    assert FOLDERS.exists(state) is exists
    assert FOLDERS.destroyed(state) is destroyed


@pytest.mark.parametrize(("cls", "status", "title"), [
    (Rejection, 422, "Command rejected"),
    (NotFound, 404, "Not found"),
    (AlreadyExists, 409, "Conflict"),
    (Gone, 410, "Gone"),
    (InvalidCommand, 422, "Invalid command"),
])
def test_rejection_classes(cls: type[Rejection], status: int, title: str) -> None:
    e = cls("some detail")
    assert isinstance(e, Rejection)
    assert (e.status, e.title, e.detail, str(e)) == (status, title, "some detail", "some detail")
    assert repr(e) == f"{cls.__name__}('some detail')"


def test_invalid_event_is_not_a_rejection() -> None:
    assert not issubclass(InvalidEvent, Rejection)


# --------------------------------------------------------------------------------------------
# decide: every command in every state
# --------------------------------------------------------------------------------------------

CREATE = {"name": "Projects", "parent_id": "p-1"}
UPDATE = {"name": "Renamed"}

# (state, command, data, events or the rejection class raised)
DECIDE: list[tuple[str, str, Mapping[str, Any], list[NewEvent] | type[Rejection]]] = [
    ("new", "Create", CREATE, [NewEvent(CREATED, {"name": "Projects", "parent_id": "p-1"})]),
    ("new", "Update", UPDATE, NotFound),
    ("new", "Destroy", {}, NotFound),
    ("existing", "Create", CREATE, AlreadyExists),
    ("existing", "Update", UPDATE, [NewEvent(UPDATED, {"name": "Renamed"})]),
    ("existing", "Destroy", {}, [NewEvent(DESTROYED, {})]),
    ("destroyed", "Create", CREATE, Gone),
    ("destroyed", "Update", UPDATE, Gone),
    ("destroyed", "Destroy", {}, Gone),
    # Gone and NotFound come before the data is looked at.
    ("destroyed", "Create", {"name": ""}, Gone),
    ("destroyed", "Update", {}, Gone),
    ("new", "Update", {"name": 5}, NotFound),
    ("existing", "Create", {"name": ""}, AlreadyExists),
]


@pytest.mark.parametrize(("state", "name", "data", "expected"), DECIDE,
                         ids=[f"{d[1]} in {d[0]} -> "
                              + (d[3].__name__ if isinstance(d[3], type) else "events")
                              + f" {i}" for i, d in enumerate(DECIDE)])
def test_decide(state: str, name: str, data: Mapping[str, Any],
                expected: list[NewEvent] | type[Rejection]) -> None:
    command = Command(name, data)
    if isinstance(expected, list):
        assert list(decide(command, STATES[state])) == expected
        assert list(FOLDERS.decide(command, STATES[state])) == expected
    else:
        with pytest.raises(expected) as info:
            decide(command, STATES[state])
        assert info.value.status in (404, 409, 410)


@pytest.mark.parametrize(("state", "name", "status"), [
    ("new", "Update", 404), ("new", "Destroy", 404), ("existing", "Create", 409),
    ("destroyed", "Create", 410), ("destroyed", "Update", 410), ("destroyed", "Destroy", 410),
    ("new", "Create", 422), ("existing", "Update", 422),
])
def test_rejection_status(state: str, name: str, status: int) -> None:
    with pytest.raises(Rejection) as info:
        decide(Command(name, {"name": ""}), STATES[state])
    assert info.value.status == status


def test_create_without_parent() -> None:
    assert list(decide(Command("Create", {"name": "Top"}), NEW)) == [
        NewEvent(CREATED, {"name": "Top", "parent_id": None})]
    assert list(decide(Command("Create", {"name": "Top", "parent_id": None}), NEW)) == [
        NewEvent(CREATED, {"name": "Top", "parent_id": None})]


def test_decide_ignores_unknown_data_fields() -> None:
    events = decide(Command("Create", {"name": "A", "parent_id": None, "colour": "red"}), NEW)
    assert list(events) == [NewEvent(CREATED, {"name": "A", "parent_id": None})]
    events = decide(Command("Update", {"name": "B", "parent_id": "elsewhere"}), EXISTING)
    assert list(events) == [NewEvent(UPDATED, {"name": "B"})]
    events = decide(Command("Destroy", {"name": "ignored"}), EXISTING)
    assert list(events) == [NewEvent(DESTROYED, {})]


BAD_NAMES: list[tuple[str, Any]] = [
    ("missing", None),
    ("empty", ""),
    ("blank", "   "),
    ("tabs and newlines", "\t\n"),
    ("too long", "x" * (MAX_NAME + 1)),
    ("number", 5),
    ("list", ["a"]),
    ("object", {"name": "a"}),
    ("boolean", True),
]


@pytest.mark.parametrize("name", [b[1] for b in BAD_NAMES], ids=[b[0] for b in BAD_NAMES])
@pytest.mark.parametrize(("command", "state"), [("Create", "new"), ("Update", "existing")])
def test_invalid_names(command: str, state: str, name: Any) -> None:
    data = {} if name is None else {"name": name}
    with pytest.raises(InvalidCommand) as info:
        decide(Command(command, data), STATES[state])
    assert info.value.status == 422
    assert "name" in info.value.detail


@pytest.mark.parametrize("name", ["x", "x" * MAX_NAME, " padded ", "日本語", "a/b"])
@pytest.mark.parametrize(("command", "state", "etype"), [("Create", "new", CREATED),
                                                         ("Update", "existing", UPDATED)])
def test_valid_names_are_kept_as_given(command: str, state: str, etype: str,
                                       name: str) -> None:
    [event] = decide(Command(command, {"name": name}), STATES[state])
    assert event.type == etype
    assert event.data["name"] == name


def test_name_limit_counts_characters() -> None:
    name = "é" * MAX_NAME  # 510 bytes in UTF-8, 255 characters
    [event] = decide(Command("Create", {"name": name}), NEW)
    assert event.data["name"] == name


@pytest.mark.parametrize("parent", [5, 1.5, True, ["p"], {"id": "p"}])
def test_invalid_parent(parent: Any) -> None:
    with pytest.raises(InvalidCommand) as info:
        decide(Command("Create", {"name": "A", "parent_id": parent}), NEW)
    assert info.value.status == 422
    assert "parent_id" in info.value.detail


def test_unknown_command_on_an_existing_folder_is_invalid() -> None:
    with pytest.raises(InvalidCommand) as info:
        decide(Command("Rename", {"name": "x"}), EXISTING)
    assert info.value.status == 422
    assert "Rename" in info.value.detail


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("name", ["Rename", "create", "", "Destroy "])
def test_unknown_command_is_always_rejected(state: str, name: str) -> None:
    # In a new folder this is NotFound (404) and in a destroyed one Gone (410): the state is
    # checked before the command name. The HTTP layer is expected to refuse names outside
    # FOLDERS.commands first.
    assert name not in FOLDERS.commands
    with pytest.raises(Rejection):
        decide(Command(name, {"name": "x"}), STATES[state])


def test_decide_does_not_mutate_its_inputs() -> None:
    state = dict(EXISTING)
    data = {"name": "New"}
    decide(Command("Update", data), state)
    decide(Command("Destroy", {}), state)
    assert state == EXISTING
    assert data == {"name": "New"}
    assert INITIAL == {"exists": False, "destroyed": False, "name": None, "parent_id": None}


# --------------------------------------------------------------------------------------------
# evolve
# --------------------------------------------------------------------------------------------

def test_evolve_lifecycle() -> None:
    s = evolve(NEW, CREATED, {"name": "A", "parent_id": "p"})
    assert s == {"exists": True, "destroyed": False, "name": "A", "parent_id": "p"}
    s = evolve(s, UPDATED, {"name": "B"})
    assert s == {"exists": True, "destroyed": False, "name": "B", "parent_id": "p"}
    s = evolve(s, DESTROYED, {})
    assert s == {"exists": True, "destroyed": True, "name": "B", "parent_id": "p"}


def test_evolve_returns_new_states() -> None:
    before = dict(NEW)
    after = evolve(NEW, CREATED, {"name": "A", "parent_id": None})
    assert before == NEW
    assert after is not NEW
    existing = dict(EXISTING)
    evolve(existing, UPDATED, {"name": "Z"})
    evolve(existing, DESTROYED, {})
    assert existing == EXISTING


EVOLVE_REFUSALS: list[tuple[str, str, str]] = [
    ("new", UPDATED, "before FolderCreated"),
    ("new", DESTROYED, "before FolderCreated"),
    ("new", "FolderRenamed", "before FolderCreated"),
    ("existing", CREATED, "existing folder"),
    ("existing", "FolderRenamed", "unknown event type"),
    ("existing", "", "unknown event type"),
    ("destroyed", CREATED, "after FolderDestroyed"),
    ("destroyed", UPDATED, "after FolderDestroyed"),
    ("destroyed", DESTROYED, "after FolderDestroyed"),
    ("destroyed", "FolderRenamed", "after FolderDestroyed"),
]


@pytest.mark.parametrize(("state", "etype", "why"), EVOLVE_REFUSALS,
                         ids=[f"{e[1] or 'empty'} in {e[0]}" for e in EVOLVE_REFUSALS])
def test_evolve_refusals(state: str, etype: str, why: str) -> None:
    data = {"name": "x", "parent_id": None}
    with pytest.raises(InvalidEvent, match=why):
        evolve(STATES[state], etype, data)
    with pytest.raises(InvalidEvent):
        FOLDERS.evolve(STATES[state], etype, data)


# --------------------------------------------------------------------------------------------
# decide and evolve agree
# --------------------------------------------------------------------------------------------

_COMMANDS = st.builds(
    Command,
    st.sampled_from(["Create", "Update", "Destroy", "Rename"]),
    st.fixed_dictionaries({}, optional={
        "name": st.one_of(st.text(max_size=4), st.just("x" * (MAX_NAME + 1)), st.integers()),
        "parent_id": st.none() | st.text(max_size=3) | st.integers(),
    }),
)


@given(st.lists(_COMMANDS, max_size=12))
@FAST
def test_decided_events_always_evolve(commands: list[Command]) -> None:
    """Whatever decide emits, evolve accepts: the write path never appends an invalid event."""
    state = FOLDERS.initial
    for command in commands:
        try:
            events = FOLDERS.decide(command, state)
        except Rejection as e:
            assert e.status in (404, 409, 410, 422)
            if FOLDERS.destroyed(state):
                assert isinstance(e, Gone)
            continue
        assert len(events) == 1
        for event in events:
            state = FOLDERS.evolve(state, event.type, event.data)
        assert FOLDERS.exists(state)
