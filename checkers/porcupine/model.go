// The model of one folder (the reference resource type, sdk/fenced_client/domain/folders.py) as
// Porcupine checks it: Create / Update / Destroy, each with an optional expected version,
// and reads. Every answer the API can give is an output of the model: 201 with the new
// version, a rejection (404 / 409 / 410 / 422) with the current version, a read's version
// and destroyed flag, or 404 for a folder that does not exist.
package main

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// State is what the folder's history determines about its answers.
type State struct {
	Version   int
	Exists    bool
	Destroyed bool
}

// Input is a command, an append or a read of one stream.
type Input struct {
	Stream   string `json:"stream"`
	Model    string `json:"model"` // folder (FolderModel) or open (OpenModel)
	Kind     string `json:"kind"`  // Create, Update, Destroy, Append or Get
	Expected *int   `json:"expected_version"`
	Valid    bool   `json:"valid"` // false: the command's data is refused by the decider (422)
	// An append's expectation when it is not an exact version (Expected): any, no_stream, exists
	// ("" with no Expected: any), and how many events it appends.
	Expectation string `json:"expectation"`
	Events      int    `json:"events"`
}

// Output is the answer the client saw. Unknown: the client got no verdict; the command may
// or may not have taken effect (its call may be linearized anywhere after its invocation,
// or never, since its return is the end of time).
type Output struct {
	Status    int  `json:"status"`
	Version   *int `json:"version"` // 201: the new version; rejection: current_version; read: the version
	Destroyed bool `json:"destroyed"`
	Unknown   bool `json:"unknown"`
}

// decide is the folder's decider plus the expected-version check, in the writer's order.
func decide(s State, in Input) (int, State) {
	if s.Destroyed {
		return 410, s
	}
	expected := func() bool { return in.Expected == nil || *in.Expected == s.Version }
	switch in.Kind {
	case "Create":
		if s.Exists {
			return 409, s
		}
		if !in.Valid {
			return 422, s
		}
		if !expected() {
			return 409, s
		}
		return 201, State{s.Version + 1, true, false}
	case "Update", "Destroy":
		if !s.Exists {
			return 404, s
		}
		if !in.Valid && in.Kind == "Update" {
			return 422, s
		}
		if !expected() {
			return 409, s
		}
		return 201, State{s.Version + 1, true, in.Kind == "Destroy"}
	}
	panic(fmt.Sprintf("unknown command %q", in.Kind))
}

func step(state, input, output interface{}) (bool, interface{}) {
	s, in, out := state.(State), input.(Input), output.(Output)
	if in.Kind == "Get" {
		if out.Status == 404 {
			return s.Version == 0, s
		}
		return out.Status == 200 && out.Version != nil && *out.Version == s.Version && out.Destroyed == s.Destroyed, s
	}
	status, next := decide(s, in)
	if out.Unknown {
		return true, next
	}
	if out.Status != status {
		return false, s
	}
	if status == 201 {
		return out.Version == nil || *out.Version == next.Version, next
	}
	return out.Version == nil || *out.Version == s.Version, s
}

func describe(input, output interface{}) string {
	in, out := input.(Input), output.(Output)
	arg := ""
	if in.Expected != nil {
		arg = fmt.Sprintf("expected %d", *in.Expected)
	}
	if !in.Valid && in.Kind != "Get" {
		arg += " invalid"
	}
	if out.Unknown {
		return fmt.Sprintf("%s(%s) -> unknown", in.Kind, arg)
	}
	v := "-"
	if out.Version != nil {
		v = fmt.Sprint(*out.Version)
	}
	if in.Kind == "Get" && out.Destroyed {
		v += " destroyed"
	}
	return fmt.Sprintf("%s(%s) -> %d v%s", in.Kind, arg, out.Status, v)
}

// FolderModel is the Porcupine model of one folder.
var FolderModel = porcupine.Model{
	Init:              func() interface{} { return State{} },
	Step:              step,
	Equal:             func(a, b interface{}) bool { return a.(State) == b.(State) },
	DescribeOperation: describe,
	DescribeState: func(state interface{}) string {
		s := state.(State)
		return fmt.Sprintf("v%d exists=%t destroyed=%t", s.Version, s.Exists, s.Destroyed)
	},
}
