"""The server's side of the wire format: the projection's stored event JSON, the API's limits."""

from __future__ import annotations

import json
from dataclasses import asdict

from hypothesis import given
from hypothesis import strategies as st

from fenced_client import wire
from fenced_client.rule import AcceptedEvent
from service.read.projection import event_json

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3),
                           max_leaves=10)


@given(st.builds(AcceptedEvent, version=st.integers(1, 2**40), type=st.text(max_size=10),
                 data=st.dictionaries(st.text(max_size=5), json_values, max_size=4),
                 partition=st.integers(0, 100), offset=st.integers(0, 2**40), token=st.integers(1, 2**62),
                 command=st.text(max_size=10), event_id=st.text(max_size=10), time=st.text(max_size=10)))
def test_the_stored_event_json_is_what_asdict_gave(event: AcceptedEvent) -> None:
    """event_json builds its dict by hand (asdict's deep copy was a tenth of a rebuild); the
    bytes stored in Redis, which verify and the API read back, stay exactly the same."""
    fields = asdict(event)
    del fields["data_bytes"], fields["datacontenttype"]  # a JSON event's are its defaults, never stored
    assert event_json(event) == json.dumps(fields, separators=(",", ":"))


def test_a_bytes_event_is_stored_as_data_base64_and_its_media_type() -> None:
    event = AcceptedEvent(1, "Blob", {}, 0, 5, 1, "c", "e", "t", b"\x00", "image/png")
    assert json.loads(event_json(event)) == {
        "version": 1, "type": "Blob", "data_base64": "AA==", "datacontenttype": "image/png", "partition": 0,
        "offset": 5, "token": 1, "command": "c", "event_id": "e", "time": "t"}


def test_depth_limit_covers_everything_the_api_accepts() -> None:
    from service.settings import Settings
    bounds = [m.le for m in Settings.model_fields["max_json_depth"].metadata if hasattr(m, "le")]
    assert bounds and bounds[0] <= wire.MAX_VALUE_DEPTH
