"""The conformance vectors (conformance/*.json) pass the project's own rule.

Each vector is a topic's records; the reference (``wire.decode``, ``rule.Replay``, and
``replay.TopicReplay`` for the counts and the digest, its only implementation) must give
exactly the expected verdicts, counts, digest input and digest, with the decider the vector
names (``folders``, or ``open`` for an open type). The vectors must also be what
conformance/generate.py builds, and the generator must refuse a case whose hand-written
expectation the reference contradicts.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fenced_client import domain
from fenced_client.domain import Decider, folders  # noqa: F401 - registers the vectors' resource type
from fenced_client.domain.open import open_decider
from fenced_client.rule import REASONS, Replay, Verdict
from fenced_client.wire import decode
from service.read.replay import TopicReplay

FOLDER = Path(__file__).resolve().parents[2] / "conformance"
VECTORS = sorted(FOLDER.glob("*.json"))


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conformance_generate", FOLDER / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def b64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text, validate=True)


def as_json(v: Verdict) -> dict[str, Any]:
    return {"stream": v.stream or None, "partition": v.partition, "command": v.command or None,
            "first_offset": v.first_offset, "last_offset": v.last_offset, "accepted": v.accepted,
            "reason": v.reason, "versions": [e.version for e in v.events]}


def decider_of(vector: dict[str, Any]) -> Decider:
    """``decider`` ``open``: the open type ``resource_type``; ``folders``: the folders domain."""
    if vector["decider"] == "open":
        return open_decider(vector["resource_type"])
    assert vector["decider"] == vector["resource_type"] == "folders"
    decider = domain.get("folders")
    assert decider is not None
    return decider


def replay(vector: dict[str, Any], decider: Decider | None = None) -> tuple[TopicReplay, list[dict[str, Any]]]:
    rule = Replay(decider or decider_of(vector))
    verdicts: list[Verdict] = []
    for r in vector["records"]:
        headers = [(name, b64(value)) for name, value in r["headers"]]
        verdicts += rule.feed(decode(b64(r["key"]), b64(r["value"]), headers, r["partition"], r["offset"],
                                     vector["partitions"]))
    ordered = sorted(verdicts, key=lambda v: (v.partition, v.first_offset))
    return TopicReplay(vector["topic"], rule, verdicts), [as_json(v) for v in ordered]


def test_there_are_vectors() -> None:
    assert len(VECTORS) >= 10


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_the_reference_passes_the_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    expected = vector["expected"]
    tr, verdicts = replay(vector)
    assert verdicts == expected["verdicts"]
    summary = tr.summary()
    assert summary["topic"] == vector["topic"]
    assert {k: summary[k] for k in ("records", "accepted", "discards", "streams")} == \
        {k: expected[k] for k in ("records", "accepted", "discards", "streams")}
    assert tr.digest_lines() == expected["digest_lines"]
    assert summary["digest"] == expected["digest"]
    # the digest is the SHA-256 of the lines, as wire-format.md §8.3 says
    assert hashlib.sha256("".join(expected["digest_lines"]).encode()).hexdigest() == expected["digest"]


def test_the_vectors_are_what_the_generator_builds() -> None:
    built = generator().build()
    assert sorted(built) == [p.name for p in VECTORS]
    for name, text in built.items():
        assert (FOLDER / name).read_text() == text, f"conformance/{name} is stale: run conformance/generate.py"


def test_the_vectors_cover_every_outcome() -> None:
    outcomes = {v["reason"] or "accepted" for p in VECTORS for v in json.loads(p.read_text())["expected"]["verdicts"]}
    assert outcomes == {"accepted", *REASONS}


def test_the_vectors_cover_both_deciders_and_bytes() -> None:
    vectors = [json.loads(p.read_text()) for p in VECTORS]
    assert {v["decider"] for v in vectors} == {"folders", "open"}
    lines = "".join(line for v in vectors if v["decider"] == "open" for line in v["expected"]["digest_lines"])
    assert '"data_base64":' in lines and '"datacontenttype":' in lines and '"data":' in lines


def test_the_decider_changes_the_verdicts() -> None:
    """A folder's bytes events, invalid under the folders domain, are accepted by an open type's decider."""
    vector = json.loads((FOLDER / "content_types.json").read_text())
    want = {v["first_offset"]: v["reason"] for v in vector["expected"]["verdicts"]}
    _, verdicts = replay(vector, open_decider("folders"))
    got = {v["first_offset"]: v["reason"] for v in verdicts}
    assert [want[o] for o in (7, 8, 9, 10)] == ["invalid"] * 4
    assert [got[o] for o in (7, 8, 9, 10)] == [None] * 4


def test_an_unknown_decider_is_refused() -> None:
    gen = generator()
    with pytest.raises(ValueError, match="no decider"):
        gen.decider_for("folders", "ledger")
    with pytest.raises(ValueError, match="no decider"):
        gen.decider_for("closed", "folders")


@pytest.mark.parametrize(("name", "wrong"), [("digest_rendering", "verdict"), ("digest_rendering", "counts"),
                                             ("digest_rendering", "digest_lines"), ("open_type", "digest_lines"),
                                             ("content_types", "verdict")])
def test_the_generator_refuses_a_wrong_expectation(name: str, wrong: str) -> None:
    """A vector records what was worked out by hand; where the reference disagrees, generating fails."""
    gen = generator()
    case = next(c for c in gen.CASES if c.name == name)
    if name == "open_type":  # URL-safe base64 is not the digest's alphabet
        url_safe = case.digest_lines[1].replace("+/+/", "-_-_")
        assert url_safe != case.digest_lines[1], "the line holds the standard alphabet's +/"
        bad = dataclasses.replace(case, digest_lines=[case.digest_lines[0], url_safe, *case.digest_lines[2:]])
    elif name == "content_types":  # a bytes event of a folder is invalid, not accepted
        i = next(i for i, v in enumerate(case.verdicts) if v.outcome == "invalid")
        bad = dataclasses.replace(case, verdicts=[*case.verdicts[:i], dataclasses.replace(
            case.verdicts[i], outcome="accepted", versions=(1,)), *case.verdicts[i + 1:]])
    elif wrong == "verdict":
        bad = dataclasses.replace(case, verdicts=[dataclasses.replace(case.verdicts[0], outcome="stale", versions=()),
                                                  *case.verdicts[1:]])
    elif wrong == "counts":
        bad = dataclasses.replace(case, accepted=case.accepted + 1)
    else:
        bad = dataclasses.replace(case, digest_lines=[case.digest_lines[0].replace("1e+308", "1e308"),
                                                      *case.digest_lines[1:]])
    gen.run(case)
    with pytest.raises(AssertionError, match=name):
        gen.run(bad)
