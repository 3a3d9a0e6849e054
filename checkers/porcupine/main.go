// fenced-porcupine: is a history of answers linearizable, per stream (property S7)?
//
// It reads a JSON history on stdin:
//
//	{"timeout_s": 60, "visualize": "dir or empty",
//	 "ops": [{"client": 3, "call": 10447400, "return": 10504000,   // microseconds; return null = never
//	          "input": {"stream": "f-1", "model": "folder", "kind": "Create", "expected_version": null,
//	                    "valid": true},   // an open stream's: "model": "open", "kind": "Append",
//	                                      // "expectation": "any", "events": 2
//	          "output": {"status": 201, "version": 1, "destroyed": false, "unknown": false}}, ...]}
//
// and writes {"streams": {"f-1": "Ok" | "Illegal" | "Unknown"}, "visualizations": {...}} on stdout.
// "Unknown" means Porcupine ran out of time on that stream: no verdict, not a pass.
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

type op struct {
	Client int    `json:"client"`
	Call   int64  `json:"call"`
	Return *int64 `json:"return"`
	Input  Input  `json:"input"`
	Output Output `json:"output"`
}

type request struct {
	TimeoutS  float64 `json:"timeout_s"`
	Visualize string  `json:"visualize"`
	Ops       []op    `json:"ops"`
}

type result struct {
	Streams        map[string]porcupine.CheckResult `json:"streams"`
	Visualizations map[string]string                `json:"visualizations"`
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "fenced-porcupine: cannot read the history: %v\n", err)
		os.Exit(2)
	}
	byStream := map[string][]porcupine.Operation{}
	for _, o := range req.Ops {
		ret := int64(math.MaxInt64)
		if o.Return != nil {
			ret = *o.Return
		}
		byStream[o.Input.Stream] = append(byStream[o.Input.Stream], porcupine.Operation{
			ClientId: o.Client, Input: o.Input, Call: o.Call, Output: o.Output, Return: ret})
	}
	streams := make([]string, 0, len(byStream))
	for s := range byStream {
		streams = append(streams, s)
	}
	sort.Strings(streams)
	timeout := time.Duration(req.TimeoutS * float64(time.Second))
	out := result{Streams: map[string]porcupine.CheckResult{}, Visualizations: map[string]string{}}
	for _, s := range streams {
		model := FolderModel
		if byStream[s][0].Input.(Input).Model == "open" {
			model = OpenModel
		}
		res, info := porcupine.CheckOperationsVerbose(model, byStream[s], timeout)
		out.Streams[s] = res
		if res != porcupine.Ok && req.Visualize != "" {
			path := filepath.Join(req.Visualize, "linearizability-"+unsafeName.ReplaceAllString(s, "_")+".html")
			if err := porcupine.VisualizePath(model, info, path); err == nil {
				out.Visualizations[s] = path
			}
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(2)
	}
}
