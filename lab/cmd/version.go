package cmd

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// Version is meshlab's version, set at link time
// (-ldflags "-X github.com/meshlab/meshlab/lab/cmd.Version=v0.1.0").
var Version = "dev"

// Commit is the VCS revision the binary was built from, if Go recorded it.
func Commit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// VersionCommand is `meshlab version`.
func VersionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print meshlab's version, commit and Go version",
		Description: `Examples:
   meshlab version
   meshlab version -o json`,
		Flags: []cli.Flag{outputFlag},
		Action: func(c *cli.Context) error {
			v := map[string]string{"version": Version, "commit": Commit(), "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH}
			if c.String("output") == "json" {
				return writeJSON(c.App.Writer, v)
			}
			fmt.Fprintf(c.App.Writer, "meshlab %s (commit %s, %s, %s)\n", v["version"], v["commit"], v["go"], v["platform"])
			return nil
		},
	}
}
