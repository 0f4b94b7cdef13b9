package cmd

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/kube"
	"github.com/meshlab/meshlab/lab/local"
)

// openRuntime finds the lab a command acts on from its state directory
// (a kind lab's record, else the local runtime) and returns its Runtime.
// It is the only place that knows there is more than one runtime.
var openRuntime = func(c *cli.Context) (lab.Runtime, error) {
	dir, err := lab.StateDir(c.String("state-dir"))
	if err != nil {
		if c.String("controlplane") == "" {
			return nil, err
		}
		// A control plane named by flag needs no state directory.
		return newRuntime(c, "local", "")
	}
	if _, err := kube.ReadRecord(dir); err == nil {
		return newRuntime(c, "kind", dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the kind lab's record: %w", err)
	}
	return newRuntime(c, "local", dir)
}

// newRuntime is the runtime called name for the lab of dir.
func newRuntime(c *cli.Context, name, dir string) (lab.Runtime, error) {
	switch name {
	case "local":
		return local.Open(dir, local.WithControlPlane(c.String("controlplane"), c.String("token")), local.WithStderr(c.App.ErrWriter))
	case "kind":
		// A kind lab: the one recorded in dir, or the one up is to make
		// there (which needs the image builder and the mesh installer).
		if _, err := kube.ReadRecord(dir); err == nil {
			return kube.Open(dir, c.String("kubeconfig"))
		}
		return kindRuntime(dir, c.String("kiali-web-root")), nil
	}
	return nil, fmt.Errorf("unknown runtime %q", name)
}

// runningRuntime is the runtime of a lab running in dir ("" for none): the
// local runtime's record names it while its runtime process lives.
func runningRuntime(dir string) string {
	if st, err := lab.ReadStatus(dir); err == nil {
		return st.Runtime
	}
	return ""
}
