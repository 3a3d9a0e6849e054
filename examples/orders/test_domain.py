"""The orders example's own tests: pure, no servers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from examples.orders.domain import INITIAL, ORDERS
from fenced_client.domain import Command, InvalidEvent, Rejection, State

PLACE = {"lines": [{"sku": "tea", "quantity": 2}], "total": 700}


def run(*commands: tuple[str, dict[str, Any]]) -> State:
    state = INITIAL
    for name, data in commands:
        for e in ORDERS.decide(Command(name, data), state):
            state = ORDERS.evolve(state, e.type, e.data)
    return state


def refused(history: Sequence[tuple[str, dict[str, Any]]], name: str, data: dict[str, Any]) -> tuple[int, str]:
    state = run(*history)
    with pytest.raises(Rejection) as e:
        ORDERS.decide(Command(name, data), state)
    return e.value.status, e.value.detail


def test_an_order_is_placed_paid_and_shipped() -> None:
    state = run(("Place", PLACE), ("Pay", {"amount": 700}), ("Ship", {}))
    assert state["paid"] and state["shipped"] and not state["cancelled"] and ORDERS.exists(state)


def test_the_invariants_refuse_commands() -> None:
    placed = [("Place", PLACE)]
    paid = [*placed, ("Pay", {"amount": 700})]
    assert refused([], "Pay", {"amount": 700}) == (404, "the order was never placed")
    assert refused(placed, "Place", PLACE)[0] == 409
    assert refused(placed, "Ship", {}) == (409, "an order is shipped only once it is paid")
    assert refused(placed, "Pay", {"amount": 699}) == (422, "the order's total is 700, not 699")
    assert refused(paid, "Pay", {"amount": 700}) == (409, "the order is already paid")
    assert refused([*paid, ("Ship", {})], "Cancel", {}) == (409, "a shipped order cannot be cancelled")
    assert refused([*placed, ("Cancel", {})], "Ship", {}) == (410, "the order was cancelled")
    assert refused([], "Place", {"lines": [], "total": 1})[0] == 422
    assert refused([], "Place", {"lines": [{"sku": "tea", "quantity": True}], "total": 1})[0] == 422


@pytest.mark.parametrize(("history", "event"), [
    ([], "OrderPaid"),
    ([("OrderPlaced", PLACE), ("OrderCancelled", {})], "OrderShipped"),
    ([("OrderPlaced", PLACE), ("OrderPaid", {"amount": 700})], "OrderPaid"),
    ([("OrderPlaced", PLACE)], "OrderShipped"),
    ([("OrderPlaced", PLACE), ("OrderPaid", {}), ("OrderShipped", {})], "OrderCancelled"),
])
def test_evolve_refuses_what_decide_would_never_allow(history: list[tuple[str, dict[str, Any]]], event: str) -> None:
    """So the consumer rule discards such an event as invalid, whoever appended it."""
    state = INITIAL
    for t, d in history:
        state = ORDERS.evolve(state, t, d)
    with pytest.raises(InvalidEvent):
        ORDERS.evolve(state, event, {})
