// The model of one open stream (sdk/fenced_client/domain/open.py) as Porcupine checks it. The
// client decides the events; the stream's whole state is its version. An append of n events
// with an expected version (an exact one, any, no_stream, exists) appends all n if the
// expectation holds (201 at version+n), else changes nothing (409 with current_version =
// version); a read answers the version, or 404 while the stream has no event.
package main

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// holds is expectation_fails of the open decider, negated.
func holds(in Input, version int) bool {
	if in.Expected != nil {
		return *in.Expected == version
	}
	switch in.Expectation {
	case "", "any":
		return true
	case "no_stream":
		return version == 0
	case "exists":
		return version > 0
	}
	panic(fmt.Sprintf("unknown expectation %q", in.Expectation))
}

func openStep(state, input, output interface{}) (bool, interface{}) {
	v, in, out := state.(int), input.(Input), output.(Output)
	if in.Kind == "Get" {
		if out.Status == 404 {
			return v == 0, v
		}
		return out.Status == 200 && out.Version != nil && *out.Version == v && !out.Destroyed, v
	}
	if in.Kind != "Append" || in.Events < 1 {
		panic(fmt.Sprintf("not an append to an open stream: %+v", in))
	}
	next := v
	if holds(in, v) {
		next = v + in.Events
	}
	if out.Unknown {
		return true, next
	}
	if next != v {
		return out.Status == 201 && (out.Version == nil || *out.Version == next), next
	}
	return out.Status == 409 && (out.Version == nil || *out.Version == v), v
}

func describeOpen(input, output interface{}) string {
	in, out := input.(Input), output.(Output)
	arg := in.Expectation
	if in.Expected != nil {
		arg = fmt.Sprint(*in.Expected)
	} else if arg == "" {
		arg = "any"
	}
	call := "Get()"
	if in.Kind == "Append" {
		call = fmt.Sprintf("Append(%d events, expected %s)", in.Events, arg)
	}
	if out.Unknown {
		return call + " -> unknown"
	}
	v := "-"
	if out.Version != nil {
		v = fmt.Sprint(*out.Version)
	}
	return fmt.Sprintf("%s -> %d v%s", call, out.Status, v)
}

// OpenModel is the Porcupine model of one open stream.
var OpenModel = porcupine.Model{
	Init:              func() interface{} { return 0 },
	Step:              openStep,
	Equal:             func(a, b interface{}) bool { return a.(int) == b.(int) },
	DescribeOperation: describeOpen,
	DescribeState:     func(state interface{}) string { return fmt.Sprintf("v%d", state.(int)) },
}
