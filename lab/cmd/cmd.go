// Package cmd owns meshlab's user-facing commands: the lab's lifecycle (up,
// down, status, exec, logs, dashboard) and the control plane's client side
// (apply, get, delete, analyze, proxy-status, proxy-config), and the modes
// the lab runs as its components' pods where they have no package of their
// own (kiali, the console). Each command is a constructor returning a
// *cli.Command; main wires them.
package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"strings"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/lab"
)

// Flags shared by several commands.
var (
	stateDirFlag = &cli.StringFlag{
		Name: "state-dir", Usage: "the lab's state directory (default $XDG_STATE_HOME/meshlab)",
		EnvVars: []string{"MESHLAB_STATE_DIR"},
	}
	namespaceFlag = &cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Value: "default", Usage: "namespace"}
	outputFlag    = &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table, json or yaml"}
	cpFlag        = &cli.StringFlag{
		Name: "controlplane", Usage: "control plane API address (default: the running lab's, else 127.0.0.1:15014)",
		EnvVars: []string{"MESHLAB_CONTROLPLANE"},
	}
	tokenFlag = &cli.StringFlag{
		Name: "token", Usage: "bearer token for the control plane API (default: the running lab's, from its state directory, when talking to that lab)",
		EnvVars: []string{"MESHLAB_TOKEN"},
	}
)

// client finds the control plane (lab.ControlPlaneClient): --controlplane,
// else the running lab's, else the default port on loopback, with --token or
// the lab's token.
func client(c *cli.Context) (*api.Client, error) {
	addr := c.String("controlplane")
	dir, err := lab.StateDir(c.String("state-dir"))
	if err != nil {
		if addr == "" {
			return nil, err
		}
		dir = ""
	}
	cl, warn := lab.ControlPlaneClient(dir, addr, c.String("token"))
	if warn != nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: %v; run meshlab as the user that ran `meshlab up`, or pass --token\n", warn)
	}
	return cl, nil
}

// explain turns an unreachable control plane into advice.
func explain(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, api.ErrUnreachable) {
		return fmt.Errorf("%w\nis the lab up? start it with `meshlab up`, or point --controlplane at a running control plane", err)
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func checkOutput(c *cli.Context, allowed ...string) (string, error) {
	o := c.String("output")
	for _, a := range allowed {
		if o == a {
			return o, nil
		}
	}
	return "", cli.Exit(fmt.Sprintf("--output %q: want one of %s", o, strings.Join(allowed, ", ")), 2)
}
