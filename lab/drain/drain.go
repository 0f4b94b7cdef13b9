// Package drain owns how long meshlab's long-running modes (control plane,
// proxy, gateway, samples) drain when they are told to stop: Istio's
// terminationDrainDuration, its flag and the environment variable Istio's
// injected sidecars read. It imports nothing of meshlab, so every mode's
// command can use it.
package drain

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// DefaultDuration is Istio's terminationDrainDuration default.
const DefaultDuration = 5 * time.Second

// EnvVar is the variable Istio's injection template sets from
// proxy.istio.io/config terminationDrainDuration, in whole seconds.
const EnvVar = "TERMINATION_DRAIN_DURATION_SECONDS"

// FlagName is the flag every long-running mode takes.
const FlagName = "termination-drain-duration"

// Duration is a flag value that takes a Go duration ("2.5s") or, as
// Istio's variable does, a number of seconds ("5").
type Duration time.Duration

// Set parses s as a duration or whole seconds.
func (d *Duration) Set(s string) error {
	s = strings.TrimSpace(s)
	v, err := time.ParseDuration(s)
	if n, nerr := strconv.ParseUint(s, 10, 32); nerr == nil {
		v, err = time.Duration(n)*time.Second, nil
	}
	// Zero is refused rather than read as "the default", which is what
	// the modes' Options make of it.
	if err != nil || v <= 0 {
		return fmt.Errorf("drain duration %q: want seconds (5) or a duration (2.5s), more than 0", s)
	}
	*d = Duration(v)
	return nil
}

func (d *Duration) String() string { return time.Duration(*d).String() }

// Flag returns the --termination-drain-duration flag, also read from
// TERMINATION_DRAIN_DURATION_SECONDS. A new flag each call: urfave/cli
// keeps parse state in its flags.
func Flag() cli.Flag {
	v := Duration(DefaultDuration)
	return &cli.GenericFlag{
		Name:    FlagName,
		Value:   &v,
		EnvVars: []string{EnvVar},
		Usage: "on SIGTERM, stop taking new connections and let requests in flight finish for at most this long " +
			"(seconds or a duration; Istio's terminationDrainDuration)",
	}
}

// FromFlag returns the drain duration a command was given.
func FromFlag(c *cli.Context) time.Duration {
	if d, ok := c.Generic(FlagName).(*Duration); ok {
		return time.Duration(*d)
	}
	return DefaultDuration
}
