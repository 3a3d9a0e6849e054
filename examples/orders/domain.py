"""An example domain served by an unmodified fenced: orders (Place, Pay, Ship, Cancel).

Run it with ``FENCED_RESOURCE_TYPES=folders,orders FENCED_DECIDERS=examples.orders.domain:ORDERS``.
Its invariants hold twice: ``decide`` refuses a command the state does not allow (the client
hears why), and ``evolve`` refuses such an event, so the consumer rule discards one that a
writer of its own appended anyway (``invalid``):

- an order is placed once, with at least one line and a positive total;
- it is paid once, with exactly its total;
- it is shipped once, and only once paid;
- it is cancelled only before it is shipped, and nothing happens to it after that.
"""

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
    Rejection,
    State,
)
from fenced_client.wire import NewEvent

INITIAL: State = {"placed": False, "paid": False, "shipped": False, "cancelled": False, "lines": [], "total": 0}


class WrongState(Rejection):
    """The order is not in a state that allows the command (409)."""

    status = 409
    title = "Conflict"


def _lines(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    lines = data.get("lines")
    if not isinstance(lines, list) or not lines:
        raise InvalidCommand("'lines' must be a non-empty list of {sku, quantity}")
    out = []
    for line in lines:
        if not isinstance(line, dict) or not isinstance(line.get("sku"), str) or not line["sku"] \
                or not isinstance(line.get("quantity"), int) or isinstance(line["quantity"], bool) \
                or line["quantity"] < 1:
            raise InvalidCommand("each line needs a non-empty 'sku' and a 'quantity' of at least 1")
        out.append({"sku": line["sku"], "quantity": line["quantity"]})
    return out


def _amount(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidCommand(f"'{name}' must be a positive whole number of cents")
    return value


def decide(command: Command, state: State) -> Sequence[NewEvent]:
    data = command.data
    if state["cancelled"]:
        raise Gone("the order was cancelled")
    if command.name == "Place":
        if state["placed"]:
            raise AlreadyExists("the order was already placed")
        return [NewEvent("OrderPlaced", {"lines": _lines(data), "total": _amount(data, "total")})]
    if not state["placed"]:
        raise NotFound("the order was never placed")
    if command.name == "Pay":
        if state["paid"]:
            raise WrongState("the order is already paid")
        amount = _amount(data, "amount")
        if amount != state["total"]:
            raise InvalidCommand(f"the order's total is {state['total']}, not {amount}")
        return [NewEvent("OrderPaid", {"amount": amount})]
    if command.name == "Ship":
        if not state["paid"]:
            raise WrongState("an order is shipped only once it is paid")
        if state["shipped"]:
            raise WrongState("the order was already shipped")
        return [NewEvent("OrderShipped", {})]
    if command.name == "Cancel":
        if state["shipped"]:
            raise WrongState("a shipped order cannot be cancelled")
        return [NewEvent("OrderCancelled", {"reason": str(data.get("reason", ""))})]
    raise InvalidCommand(f"unknown command {command.name!r}: use Place, Pay, Ship or Cancel")


def evolve(state: State, event_type: str, data: Mapping[str, Any]) -> State:
    if state["cancelled"]:
        raise InvalidEvent(f"{event_type} after OrderCancelled")
    if event_type == "OrderPlaced":
        if state["placed"]:
            raise InvalidEvent("a second OrderPlaced")
        return {**state, "placed": True, "lines": list(data.get("lines", [])), "total": data.get("total", 0)}
    if not state["placed"]:
        raise InvalidEvent(f"{event_type} before OrderPlaced")
    if event_type == "OrderPaid":
        if state["paid"]:
            raise InvalidEvent("a second OrderPaid")
        return {**state, "paid": True}
    if event_type == "OrderShipped":
        if not state["paid"] or state["shipped"]:
            raise InvalidEvent("OrderShipped before OrderPaid, or twice")
        return {**state, "shipped": True}
    if event_type == "OrderCancelled":
        if state["shipped"]:
            raise InvalidEvent("OrderCancelled after OrderShipped")
        return {**state, "cancelled": True}
    raise InvalidEvent(f"unknown event type {event_type!r}")


ORDERS = Decider(
    type="orders",
    initial=INITIAL,
    decide=decide,
    evolve=evolve,
    exists=lambda s: bool(s["placed"]),
    destroyed=lambda s: bool(s["cancelled"]),
    commands=frozenset({"Place", "Pay", "Ship", "Cancel"}),
)
