package cmd

import (
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab"
)

// openRuntime finds the lab a command acts on from its state directory
// (a kind lab's record, else the local runtime) and returns its Runtime.
// It is the only place that knows there is more than one runtime.
//
// TODO(issue 10): the lifecycle work replaces this stub.
var openRuntime = func(c *cli.Context) (lab.Runtime, error) {
	return nil, errors.New("openRuntime: not implemented yet")
}
