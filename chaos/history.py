"""The history of a chaos run: every operation's invoke and completion, as clients saw it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["ok", "fail", "unknown"]


@dataclass
class Op:
    """One command, append or read sent by a chaos client. ``key`` is its Idempotency-Key (=
    command id); the attempts of one operation retried after an unknown outcome share it."""

    id: int
    stream: str
    command: str
    key: str
    invoke: float
    complete: float | None = None
    outcome: Outcome | None = None
    status: int | None = None
    version: int | None = None
    offsets: list[int] = field(default_factory=list)
    detail: str = ""
    zombie: bool = False
    """Sent with the pause-before-append fault: its first append may land as a zombie."""
    expected_version: int | str | None = None
    """An exact version, or (appends to an open stream) ``any``, ``no_stream`` or ``exists``."""
    valid: bool = True
    """False: the command's data is one the decider refuses (422)."""
    current_version: int | None = None
    """A rejection's ``current_version``."""
    destroyed: bool = False
    """A read's ``destroyed`` (``command`` is ``Get`` for reads: 200 is ok, 404 a definite answer)."""
    client: int = -1
    """Which chaos client sent it (-1: the fault injector)."""
    type: str = "folders"
    """The resource type: ``folders`` (commands), or the open type (``command`` is ``Append``)."""
    events: list[str] = field(default_factory=list)
    """An append's event types, in order."""
    attempt: int = 0
    """0, or which retry (with the same key, after an unknown outcome) of the operation this is."""
    race: str = ""
    """Two appends sent at once through the two replicas with the same expected version share it."""

    @property
    def stream_key(self) -> str:
        """The stream, named apart from other types' streams of the same id."""
        return self.stream if self.type == "folders" else f"{self.type}:{self.stream}"

    @property
    def is_read(self) -> bool:
        return self.command == "Get"


def classify(status: int | None, body: dict[str, Any] | None) -> Outcome:
    """201 is ok; a 4xx or a lease that stayed busy is a definite failure; the rest is unknown."""
    if status == 201:
        return "ok"
    if status is not None and 400 <= status < 500:
        return "fail"
    if status == 503 and body is not None and body.get("title") == "Busy":
        return "fail"
    return "unknown"


@dataclass
class FaultEvent:
    kind: str
    start: float
    end: float | None = None
    detail: str = ""


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    faults: list[FaultEvent] = field(default_factory=list)
    t0: float = 0.0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"t0": self.t0, "ops": [asdict(o) for o in self.ops],
                                    "faults": [asdict(f) for f in self.faults]}))

    @classmethod
    def load(cls, path: Path) -> History:
        raw = json.loads(path.read_text())
        return cls([Op(**o) for o in raw["ops"]], [FaultEvent(**f) for f in raw["faults"]], raw["t0"])
