package main

import (
	"math"
	"testing"

	"github.com/anishathalye/porcupine"
)

// appendOp is an append of `events` events; expected is an exact version (an int) or an
// expectation (any, no_stream, exists; "": none, the same as any).
func appendOp(client int, call, ret int64, events int, expected interface{}, status int, version *int) porcupine.Operation {
	in := Input{Stream: "ledger:s", Model: "open", Kind: "Append", Events: events}
	switch e := expected.(type) {
	case int:
		in.Expected = v(e)
	case string:
		in.Expectation = e
	}
	return porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: in,
		Output: Output{Status: status, Version: version}}
}

func read(client int, call, ret int64, status int, version *int) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Call: call, Return: ret,
		Input: Input{Stream: "ledger:s", Model: "open", Kind: "Get"}, Output: Output{Status: status, Version: version}}
}

func checkOpen(t *testing.T, want porcupine.CheckResult, ops ...porcupine.Operation) {
	t.Helper()
	if got := porcupine.CheckOperations(OpenModel, ops); got != (want == porcupine.Ok) {
		t.Fatalf("want %s, got linearizable=%t", want, got)
	}
}

// The race the chaos racers run: two appends at one exact version through the two replicas.
func TestTwoAppendsAtOneExpectedVersionOneWins(t *testing.T) {
	opened := appendOp(0, 0, 10, 1, "no_stream", 201, v(1))
	checkOpen(t, porcupine.Ok, opened,
		appendOp(1, 20, 40, 2, 1, 201, v(3)), appendOp(2, 21, 41, 1, 1, 409, v(3)))
	checkOpen(t, porcupine.Ok, opened, // either may win
		appendOp(1, 20, 40, 2, 1, 409, v(2)), appendOp(2, 21, 41, 1, 1, 201, v(2)))
	// both told 201 at the same expected version: one of them was not checked against the other
	checkOpen(t, porcupine.Illegal, opened,
		appendOp(1, 20, 40, 2, 1, 201, v(3)), appendOp(2, 21, 41, 1, 1, 201, v(2)))
	checkOpen(t, porcupine.Illegal, opened,
		appendOp(1, 20, 40, 1, 1, 201, v(2)), appendOp(2, 21, 41, 1, 1, 201, v(2)))
	// the loser's current_version must be the winner's
	checkOpen(t, porcupine.Illegal, opened,
		appendOp(1, 20, 40, 2, 1, 201, v(3)), appendOp(2, 21, 41, 1, 1, 409, v(1)))
}

func TestEveryExpectation(t *testing.T) {
	checkOpen(t, porcupine.Ok, appendOp(0, 0, 10, 1, "exists", 409, v(0)))
	checkOpen(t, porcupine.Illegal, appendOp(0, 0, 10, 1, "exists", 201, v(1)))
	checkOpen(t, porcupine.Ok, appendOp(0, 0, 10, 1, 0, 201, v(1)))
	checkOpen(t, porcupine.Ok, appendOp(0, 0, 10, 2, "any", 201, v(2)), appendOp(0, 20, 30, 1, "", 201, v(3)))
	opened := appendOp(0, 0, 10, 1, "no_stream", 201, v(1))
	checkOpen(t, porcupine.Ok, opened, appendOp(1, 20, 30, 1, "no_stream", 409, v(1)))
	checkOpen(t, porcupine.Illegal, opened, appendOp(1, 20, 30, 1, "no_stream", 201, v(2)))
	checkOpen(t, porcupine.Ok, opened, appendOp(1, 20, 30, 3, "exists", 201, v(4)))
	checkOpen(t, porcupine.Illegal, opened, appendOp(1, 20, 30, 3, "exists", 201, v(2))) // one version for 3 events
	checkOpen(t, porcupine.Ok, opened, appendOp(1, 20, 30, 1, 0, 409, v(1)))
	checkOpen(t, porcupine.Illegal, opened, appendOp(1, 20, 30, 1, 1, 409, v(1))) // it held: no refusal
	checkOpen(t, porcupine.Illegal, opened, appendOp(1, 20, 30, 1, "any", 409, v(1)))
}

// An acknowledged append that a later read does not show was dropped.
func TestADroppedAcknowledgedAppendIsCaught(t *testing.T) {
	checkOpen(t, porcupine.Illegal, appendOp(0, 0, 10, 1, "no_stream", 201, v(1)),
		appendOp(0, 20, 30, 2, 1, 201, v(3)), read(1, 40, 50, 200, v(1)))
	checkOpen(t, porcupine.Illegal, appendOp(0, 0, 10, 1, "no_stream", 201, v(1)), read(1, 40, 50, 404, nil))
	checkOpen(t, porcupine.Ok, appendOp(0, 0, 10, 1, "no_stream", 201, v(1)),
		appendOp(0, 20, 30, 2, 1, 201, v(3)), read(1, 25, 50, 200, v(1))) // the read may precede it
}

// An append of several events is atomic: no one sees the stream between them.
func TestNoReadBetweenTheEventsOfOneAppend(t *testing.T) {
	checkOpen(t, porcupine.Illegal, appendOp(0, 0, 100, 3, "no_stream", 201, v(3)), read(1, 10, 20, 200, v(2)))
	checkOpen(t, porcupine.Illegal, appendOp(0, 0, 100, 3, "no_stream", 201, v(3)),
		appendOp(1, 10, 20, 1, "exists", 409, v(1)))
	checkOpen(t, porcupine.Ok, appendOp(0, 0, 100, 3, "no_stream", 201, v(3)), read(1, 10, 20, 200, v(3)))
}

func TestAnUnknownAppendIsPossiblyApplied(t *testing.T) {
	unknown := porcupine.Operation{ClientId: 0, Call: 0, Return: math.MaxInt64,
		Input:  Input{Stream: "ledger:s", Model: "open", Kind: "Append", Events: 2, Expectation: "no_stream"},
		Output: Output{Unknown: true}}
	checkOpen(t, porcupine.Ok, unknown, read(1, 10, 20, 200, v(2)))
	checkOpen(t, porcupine.Ok, unknown, read(1, 10, 20, 404, nil))
	checkOpen(t, porcupine.Illegal, unknown, read(1, 10, 20, 200, v(1)))
	checkOpen(t, porcupine.Illegal, unknown, read(1, 10, 20, 200, v(2)), read(1, 30, 40, 404, nil))
}
