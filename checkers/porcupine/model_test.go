package main

import (
	"math"
	"testing"

	"github.com/anishathalye/porcupine"
)

func v(n int) *int { return &n }

func cmd(client int, call, ret int64, kind string, status int, version *int) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Call: call, Return: ret,
		Input:  Input{Stream: "f", Kind: kind, Valid: true},
		Output: Output{Status: status, Version: version}}
}

func get(client int, call, ret int64, status int, version *int, destroyed bool) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Call: call, Return: ret,
		Input:  Input{Stream: "f", Kind: "Get"},
		Output: Output{Status: status, Version: version, Destroyed: destroyed}}
}

func check(t *testing.T, want porcupine.CheckResult, ops ...porcupine.Operation) {
	t.Helper()
	if got := porcupine.CheckOperations(FolderModel, ops); got != (want == porcupine.Ok) {
		t.Fatalf("want %s, got linearizable=%t", want, got)
	}
}

// The first failing sequence of issue #12: B refused because of A before A was accepted,
// and a read between them saw no folder.
func TestRejectionBeforeItsPredecessorIsAccepted(t *testing.T) {
	check(t, porcupine.Illegal,
		cmd(0, 10447, 10504, "Create", 201, v(1)),
		cmd(1, 10450, 10476, "Create", 409, v(1)),
		get(1, 10478, 10485, 404, nil, false))
}

// The second: a Create refused as gone (current_version 4), then a read shows version 3.
func TestGoneBeforeTheDestroyIsAccepted(t *testing.T) {
	check(t, porcupine.Illegal,
		cmd(0, 1, 2, "Create", 201, v(1)), cmd(0, 3, 4, "Update", 201, v(2)), cmd(0, 5, 6, "Update", 201, v(3)),
		cmd(0, 11970, 12013, "Destroy", 201, v(4)),
		cmd(1, 11980, 11995, "Create", 410, v(4)),
		get(1, 11996, 11999, 200, v(3), false))
}

func TestConcurrentAnswersThatHaveAnOrderAreLinearizable(t *testing.T) {
	check(t, porcupine.Ok,
		cmd(0, 0, 100, "Create", 201, v(1)),
		cmd(1, 10, 120, "Create", 409, v(1)), // answered after A's 201 could have happened
		get(2, 20, 30, 404, nil, false),      // before A took effect
		cmd(0, 130, 140, "Update", 201, v(2)),
		get(1, 150, 160, 200, v(2), false))
}

func with(o porcupine.Operation, in func(*Input), out func(*Output)) porcupine.Operation {
	i, r := o.Input.(Input), o.Output.(Output)
	in(&i)
	out(&r)
	o.Input, o.Output = i, r
	return o
}

func same[T any](*T) {}

func TestAnExpectedVersionIsChecked(t *testing.T) {
	created := cmd(0, 0, 10, "Create", 201, v(1))
	expect := func(n int) func(*Input) { return func(i *Input) { i.Expected = v(n) } }
	check(t, porcupine.Ok, created, with(cmd(1, 30, 40, "Update", 201, v(2)), expect(1), same[Output]))
	check(t, porcupine.Illegal, created, with(cmd(1, 30, 40, "Update", 201, v(2)), expect(0), same[Output]))
	check(t, porcupine.Ok, created, with(cmd(1, 30, 40, "Update", 409, v(1)), expect(0), same[Output]))
	check(t, porcupine.Illegal, created, with(cmd(1, 30, 40, "Update", 409, v(1)), expect(1), same[Output]))
}

func TestAnInvalidUpdateIs422AtTheCurrentVersion(t *testing.T) {
	created := cmd(0, 0, 10, "Create", 201, v(1))
	invalid := func(i *Input) { i.Valid = false }
	check(t, porcupine.Ok, created, with(cmd(1, 30, 40, "Update", 422, v(1)), invalid, same[Output]))
	check(t, porcupine.Illegal, created, with(cmd(1, 30, 40, "Update", 422, v(0)), invalid, same[Output]))
}

func TestTwoAcceptedCreatesAreIllegal(t *testing.T) {
	check(t, porcupine.Illegal, cmd(0, 0, 10, "Create", 201, v(1)), cmd(1, 20, 30, "Create", 201, v(2)))
}

func TestAReadMayNotGoBackInTime(t *testing.T) {
	check(t, porcupine.Illegal,
		cmd(0, 0, 10, "Create", 201, v(1)), cmd(0, 20, 30, "Update", 201, v(2)),
		get(1, 40, 50, 200, v(2), false), get(1, 60, 70, 200, v(1), false))
}

// An operation whose outcome is unknown may have taken effect, or not.
func TestAnUnknownOutcomeIsPossiblyApplied(t *testing.T) {
	unknown := porcupine.Operation{ClientId: 0, Call: 0, Return: math.MaxInt64,
		Input: Input{Stream: "f", Kind: "Create", Valid: true}, Output: Output{Unknown: true}}
	check(t, porcupine.Ok, unknown, get(1, 10, 20, 200, v(1), false))      // applied
	check(t, porcupine.Ok, unknown, get(1, 10, 20, 404, nil, false))       // not (yet) applied
	check(t, porcupine.Ok, unknown, cmd(1, 10, 20, "Update", 404, v(0)))   // not applied
	check(t, porcupine.Illegal, unknown, get(1, 10, 20, 200, v(2), false)) // no second event
	check(t, porcupine.Illegal, unknown, get(1, 10, 20, 200, v(1), false), get(1, 30, 40, 404, nil, false))
}
