"""S1-S6 of the chaos checker on an open stream: a synthetic log of the ``ledger`` topic and a
history of what clients were told, first consistent, then doctored one way at a time.

(S7 runs too, through the Go checker; its own tests are in test_linearizability.py.)"""

from __future__ import annotations

from dataclasses import replace

from chaos.checker import PROPERTIES, CheckResult, TopicLog, check, open_history_problems
from chaos.history import History, Op
from fenced_client.wire import Record

TOPIC = "t.ledger"


def events(stream: str, first_offset: int, first_version: int, command: str, types: list[str], *,
           token: int = 1, partition: int = 0) -> list[Record]:
    """One append's record batch as the writer produces it."""
    return [Record("event", stream, partition, first_offset + i, token, first_version + i, command, i, len(types),
                   t) for i, t in enumerate(types)]


def appended(i: int, key: str, invoke: float, complete: float, status: int | None, *, expected: int | str | None,
             types: list[str], version: int | None = None, offsets: list[int] | None = None,
             current: int | None = None, attempt: int = 0, client: int = 0) -> Op:
    outcome = "ok" if status == 201 else "fail" if status is not None and status < 500 else "unknown"
    return Op(i, "s", "Append", key, invoke, complete, outcome, status, version,  # type: ignore[arg-type]
              offsets or [], expected_version=expected, current_version=current, client=client, type="ledger",
              events=types, attempt=attempt)


def consistent() -> tuple[History, list[Record]]:
    """Opened at v1; two events at expected 1 (v3) beat a racer refused at current version 3; a
    read of 3; an append whose first attempt's outcome was unknown, answered 201 v4 on its retry."""
    records = [Record("fence", "s", 0, 0, 1),
               *events("s", 1, 1, "a", ["Opened"]),
               *events("s", 2, 2, "b", ["Credited", "Debited"]),
               *events("s", 4, 4, "d", ["Noted"])]
    history = History([
        appended(0, "a", 0.0, 1.0, 201, expected="no_stream", types=["Opened"], version=1, offsets=[1]),
        appended(1, "b", 2.0, 3.0, 201, expected=1, types=["Credited", "Debited"], version=3, offsets=[2, 3]),
        appended(2, "c", 2.0, 3.1, 409, expected=1, types=["Noted"], current=3, client=1),
        Op(3, "s", "Get", "r", 3.2, 3.3, "ok", 200, 3, client=1, type="ledger"),
        appended(4, "d", 4.0, 5.0, 503, expected="any", types=["Noted"]),
        appended(5, "d", 6.0, 7.0, 201, expected="any", types=["Noted"], version=4, offsets=[4], attempt=1),
    ])
    return history, records


def checked(history: History, records: list[Record], records_b: list[Record] | None = None, *,
            ignore_tokens: bool = False, projection: dict[str, tuple[int, int]] | None = None) -> CheckResult:
    log = TopicLog("ledger", TOPIC, records, records if records_b is None else records_b, is_open=True)
    return check(history, [log], projection, ignore_tokens=ignore_tokens)


def only(res: CheckResult, prop: str) -> list[str]:
    """The violations of ``prop``, after asserting that no property but it (and S7) has any."""
    assert {p: n for p, n in res.counts().items() if p not in (prop, "S7")} == dict.fromkeys(
        (p for p in PROPERTIES if p not in (prop, "S7")), 0), res.violations
    assert res.violations[prop], res.violations
    return res.violations[prop]


def test_a_consistent_history_passes_and_a_retried_append_counts_once() -> None:
    history, records = consistent()
    res = checked(history, records, projection={"ledger:s": (4, 1)})
    assert res.counts() == dict.fromkeys(PROPERTIES, 0), res.violations
    assert res.unknown_accepted == 1 and res.accepted == 4
    assert res.by_type["ledger"] == {"records": 5, "accepted": 4, "discards": {}}


def test_an_acknowledged_append_missing_from_the_log_is_s1() -> None:
    history, records = consistent()
    dropped = [r for r in records if r.command != "d"]
    assert any("op 5 (Append ledger:s) acknowledged, accepted 0 times" in x for x in only(checked(history, dropped),
                                                                                          "S1"))


def test_an_append_told_another_version_offsets_or_events_is_s1() -> None:
    history, records = consistent()
    for doctored, said in [({"version": 2}, "told version 2, accepted at 3"),
                           ({"offsets": [2, 9]}, "told offsets [2, 9], accepted at [2, 3]"),
                           ({"events": ["Debited", "Credited"]},
                            "sent events ['Debited', 'Credited'], accepted ['Credited', 'Debited']")]:
        h = History([replace(o, **doctored) if o.id == 1 else o for o in history.ops])
        assert only(checked(h, records), "S1") == [f"op 1 (Append ledger:s) {said}"]


def test_two_appends_told_201_at_one_expected_version_are_caught() -> None:
    """The racer's loser told 201 too: the log has one of them, so S1 fires (and S7)."""
    history, records = consistent()
    h = History([replace(o, outcome="ok", status=201, version=2, offsets=[4], current_version=None)
                  if o.id == 2 else o for o in history.ops])
    res = checked(h, records)
    assert "op 2 (Append ledger:s) acknowledged, accepted 0 times" in res.violations["S1"]
    assert res.violations["S7"] and res.violations["S7"][0].startswith("ledger:s: not linearizable")


def test_a_refused_append_in_the_log_is_s5() -> None:
    history, records = consistent()
    records = [*records, *events("s", 5, 5, "c", ["Noted"])]
    assert only(checked(history, records), "S5") == ["op 2 (Append ledger:s) failed with 409 but was accepted"]


def test_a_version_between_the_events_of_one_append_is_s5() -> None:
    """An append is accepted whole: no read or rejection may report the version inside it."""
    history, records = consistent()
    h = History([replace(o, version=2) if o.id == 3 else replace(o, current_version=2) if o.id == 2 else o
                 for o in history.ops])
    assert only(checked(h, records), "S5") == [
        "op 2 (Append ledger:s) answered 409 at version 2, which the stream's accepted history never was at",
        "op 3 (Get ledger:s) answered 200 at version 2, which the stream's accepted history never was at"]


def test_replays_that_differ_or_a_projection_that_differs_are_s2() -> None:
    history, records = consistent()
    assert only(checked(history, records, records[:-1]), "S2") == [
        f"{TOPIC}: the assign() replay and the consumer-group replay differ"]
    assert only(checked(history, records, projection={"ledger:s": (3, 1)}), "S2") == [
        "ledger:s: replay (version, max_token) = (4, 1), projection = (3, 1)"]


def test_a_consumer_that_ignores_tokens_accepts_a_zombie_append_s4() -> None:
    """A zombie's batch (token 1) lands after another writer fenced with token 2 and appended."""
    history, records = consistent()
    records = [*records, Record("fence", "s", 0, 5, 2), *events("s", 6, 5, "e", ["Noted"], token=2),
               *events("s", 7, 6, "z", ["Noted", "Noted"], token=1)]
    assert checked(history, records).counts() == dict.fromkeys(PROPERTIES, 0)
    assert any("token 1 accepted below 2" in x for x in checked(history, records, ignore_tokens=True).violations["S4"])


def test_acknowledged_before_sent_is_judged_from_a_retried_appends_first_attempt_s6() -> None:
    """Op 5's retry was sent after op 6 was acknowledged at v5, and answered v4: fine, since its
    first attempt (op 4) was sent before. Without that first attempt it is an S6 violation."""
    history, records = consistent()
    records = [*records, *events("s", 5, 5, "f", ["Noted"])]
    late = appended(6, "f", 4.5, 5.5, 201, expected="exists", types=["Noted"], version=5, offsets=[5], client=2)
    h = History([*history.ops, late])
    assert checked(h, records).counts()["S6"] == 0
    alone = History([o for o in h.ops if o.id != 4])
    assert only(checked(alone, records), "S6") == ["ledger:s: op 6 acknowledged before op 5 was sent, but v5 >= v4"]


def test_an_open_history_with_a_gap_is_invalid() -> None:
    assert open_history_problems([{"version": 1}, {"version": 3}]) == ["version 3 at position 2"]
    assert open_history_problems([{"version": 1}, {"version": 2}]) == []


def test_a_busy_retry_of_an_append_its_first_attempt_made_is_not_s5() -> None:
    """A retry answered 503 Busy appended nothing itself; the first attempt (outcome unknown) was
    accepted, and the log settles that. A Busy first attempt that was accepted is S5."""
    history, records = consistent()
    busy = [replace(o, outcome="fail", status=503, version=None, offsets=[]) if o.id == 5 else o
            for o in history.ops]
    assert checked(History(busy), records).counts() == dict.fromkeys(PROPERTIES, 0)
    alone = History([o for o in busy if o.id != 4])
    assert only(checked(alone, records), "S5") == ["op 5 (Append ledger:s, attempt 1) failed with 503 but was accepted"]
