"""S7's checker on synthetic histories: Porcupine (the Go program in checkers/porcupine) with
the folder model, fed through :mod:`chaos.linearizability`."""

from __future__ import annotations

import subprocess

from chaos.history import History, Op
from chaos.linearizability import SOURCE, check, go


def op(i: int, name: str, invoke: float, complete: float | None, status: int | None, *, version: int | None = None,
       current: int | None = None, outcome: str | None = None, stream: str = "f", client: int = 0,
       destroyed: bool = False, expected: int | None = None) -> Op:
    if outcome is None:
        outcome = "ok" if status in (200, 201, 404) and (name == "Get" or status == 201) else \
            "fail" if status is not None and status < 500 else "unknown"
    return Op(i, stream, name, f"k{i}", invoke, complete, outcome, status, version,  # type: ignore[arg-type]
              expected_version=expected, current_version=current, destroyed=destroyed, client=client)


def test_the_go_model_tests_pass() -> None:
    done = subprocess.run([go(), "test", "./..."], cwd=SOURCE, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_rejection_resting_on_an_unaccepted_append_is_caught() -> None:
    """Issue #12's first sequence: B refused (409, current_version 1) before A's 201, and a read
    sent after B's answer saw no folder."""
    h = History([op(0, "Create", 10.4474, 10.5040, 201, version=1),
                 op(1, "Create", 10.4500, 10.4765, 409, current=1, client=1),
                 op(2, "Get", 10.4779, 10.4851, 404, client=1)])
    assert check(h).failing == ["f"]
    h.ops.pop()  # without the read, a linearization exists: A took effect before B's refusal
    assert check(h).failing == []


def test_gone_before_the_destroy_is_accepted_is_caught() -> None:
    h = History([op(0, "Create", 1, 2, 201, version=1), op(1, "Update", 3, 4, 201, version=2),
                 op(2, "Update", 5, 6, 201, version=3), op(3, "Destroy", 11.9704, 12.0134, 201, version=4),
                 op(4, "Create", 11.98, 11.9957, 410, current=4, client=1),
                 op(5, "Get", 11.996, 11.999, 200, version=3, client=1)])
    assert check(h).failing == ["f"]


def test_streams_are_checked_apart_and_each_verdict_is_named() -> None:
    h = History([op(0, "Create", 0, 1, 201, version=1, stream="a"),
                 op(1, "Create", 2, 3, 201, version=1, stream="b"),
                 op(2, "Get", 4, 5, 200, version=1, stream="a", client=1),
                 op(3, "Get", 4, 5, 404, stream="b", client=1)])  # b exists: a read after its 201 says 404
    res = check(h)
    assert res.streams == {"a": "Ok", "b": "Illegal"}
    assert res.failing == ["b"]


def test_an_unknown_outcome_is_possibly_applied_and_the_log_settles_it() -> None:
    unknown = op(0, "Create", 0, 1, 503, outcome="unknown")
    applied = op(1, "Get", 2, 3, 200, version=1, client=1)
    not_applied = op(1, "Get", 2, 3, 404, client=1)
    assert check(History([unknown, applied])).failing == []
    assert check(History([unknown, not_applied])).failing == []
    # the log accepted it at version 1: then another Create cannot also have made version 1
    other = op(2, "Create", 2, 3, 201, version=1, client=2)
    assert check(History([unknown, other])).failing == []
    assert check(History([unknown, other]), {"k0": 1}).failing == ["f"]
    # the log did not accept it: a read of version 1 is then wrong
    assert check(History([unknown, applied]), {}).failing == ["f"]


def test_a_busy_answer_and_a_read_without_an_answer_are_left_out() -> None:
    h = History([op(0, "Create", 0, 1, 201, version=1),
                 op(1, "Update", 2, 3, 503, outcome="fail", client=1),  # Busy: it changed nothing
                 op(2, "Get", 2, 3, 503, outcome="unknown", client=2),
                 op(3, "Get", 4, 5, 200, version=1, client=1)])
    res = check(h)
    assert res.failing == [] and res.operations == 2


def test_expected_versions_and_current_versions_are_checked() -> None:
    created = op(0, "Create", 0, 1, 201, version=1)
    assert check(History([created, op(1, "Update", 2, 3, 409, current=1, expected=0, client=1)])).failing == []
    assert check(History([created, op(1, "Update", 2, 3, 409, current=1, expected=1, client=1)])).failing == ["f"]
    assert check(History([created, op(1, "Update", 2, 3, 409, current=0, expected=0, client=1)])).failing == ["f"]


def append(i: int, invoke: float, complete: float | None, status: int | None, *, expected: int | str | None,
           events: int = 1, version: int | None = None, current: int | None = None, outcome: str | None = None,
           key: str | None = None, attempt: int = 0, stream: str = "s", client: int = 0) -> Op:
    """An append to the open stream ``ledger:<stream>``."""
    if outcome is None:
        outcome = "ok" if status == 201 else "fail" if status is not None and status < 500 else "unknown"
    return Op(i, stream, "Append", key or f"k{i}", invoke, complete, outcome, status, version,  # type: ignore[arg-type]
              expected_version=expected, current_version=current, client=client, type="ledger",
              events=["Noted"] * events, attempt=attempt)


def read(i: int, invoke: float, complete: float, status: int, version: int | None = None, *, stream: str = "s",
         client: int = 1) -> Op:
    return Op(i, stream, "Get", f"k{i}", invoke, complete, "ok", status, version, client=client, type="ledger")


def test_a_race_at_one_expected_version_has_one_winner() -> None:
    """The racers' race: two appends with expected version 1 at once, one through each replica."""
    opened = append(0, 0, 1, 201, expected="no_stream", version=1)
    won = append(1, 2, 4, 201, expected=1, events=2, version=3, client=1)
    lost = append(2, 2.1, 4.1, 409, expected=1, current=3, client=2)
    assert check(History([opened, won, lost])).streams == {"ledger:s": "Ok"}
    both = append(2, 2.1, 4.1, 201, expected=1, version=4, client=2)  # told 201 too: never checked against the other
    assert check(History([opened, won, both])).failing == ["ledger:s"]
    wrong = append(2, 2.1, 4.1, 409, expected=1, current=1, client=2)  # refused at a version the winner had replaced
    assert check(History([opened, won, wrong, read(3, 5, 6, 200, 3)])).failing == ["ledger:s"]


def test_an_acknowledged_append_a_read_does_not_show_is_caught() -> None:
    h = History([append(0, 0, 1, 201, expected="any", events=3, version=3),
                 append(1, 2, 3, 201, expected="exists", version=4),
                 read(2, 4, 5, 200, 3)])
    assert check(h).failing == ["ledger:s"]
    h.ops[2] = read(2, 4, 5, 200, 4)
    assert check(h).failing == []
    h.ops[2] = read(2, 0.5, 0.9, 200, 1)  # inside an append of three events: it is atomic
    assert check(h).failing == ["ledger:s"]


def test_every_expectation_is_checked() -> None:
    opened = append(0, 0, 1, 201, expected=None, version=1)
    for expected, status, ok in [("no_stream", 409, True), ("no_stream", 201, False), ("exists", 201, True),
                                 ("exists", 409, False), (1, 201, True), (0, 409, True), (0, 201, False),
                                 ("any", 409, False)]:
        second = append(1, 2, 3, status, expected=expected, version=2 if status == 201 else None,
                        current=1 if status == 409 else None, client=1)
        assert (check(History([opened, second])).failing == []) is ok, (expected, status)


def test_the_attempts_of_a_retried_append_are_one_operation() -> None:
    """An append whose outcome was unknown, sent again with its Idempotency-Key and told 201: one
    append (taken as two, the stream would be at version 2 after it, and the read of 1 illegal)."""
    first = append(0, 0, 1, 503, expected="any", key="K")
    retry = append(1, 2, 3, 201, expected="any", version=1, key="K", attempt=1)
    h = History([first, retry, read(2, 4, 5, 200, 1)])
    res = check(h, {"K": 1})
    assert res.failing == [] and res.operations == 2
    # it may have taken effect during the first attempt: a read then already sees it
    assert check(History([first, retry, read(2, 1.5, 1.8, 200, 1)]), {"K": 1}).failing == []
    # a retry refused (409): the append had no effect, whatever the first attempt did
    refused = append(1, 2, 3, 409, expected="no_stream", current=1, key="K2", attempt=1)
    other = append(3, 0.2, 0.8, 201, expected="no_stream", version=1, client=2)
    h = History([append(0, 0, 1, 503, expected="no_stream", key="K2"), refused, other, read(2, 4, 5, 200, 1)])
    assert check(h, {other.key: 1}).failing == []


def test_a_folder_and_an_open_stream_of_one_id_are_checked_apart() -> None:
    h = History([op(0, "Create", 0, 1, 201, version=1, stream="s"),
                 append(1, 2, 3, 201, expected="no_stream", version=1, stream="s"),
                 read(2, 4, 5, 200, 1, stream="s")])
    assert check(h).streams == {"s": "Ok", "ledger:s": "Ok"}
