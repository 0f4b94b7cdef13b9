package cmd

import (
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// TestWorkloadCertTTL: --workload-cert-ttl is passed on only when given,
// and refused, by name, outside what proxies can renew and the CA signs.
func TestWorkloadCertTTL(t *testing.T) {
	for _, c := range []struct {
		args    []string
		want    time.Duration
		wantErr string
	}{
		{nil, 0, ""},
		{[]string{"--workload-cert-ttl", "30s"}, 30 * time.Second, ""},
		{[]string{"--workload-cert-ttl", "10s"}, 10 * time.Second, ""},
		{[]string{"--workload-cert-ttl", "2160h"}, 2160 * time.Hour, ""},
		{[]string{"--workload-cert-ttl", "9s"}, 0, "--workload-cert-ttl 9s: want between 10s"},
		{[]string{"--workload-cert-ttl", "2161h"}, 0, "max-workload-cert-ttl"},
		{[]string{"--workload-cert-ttl", "-1m"}, 0, "--workload-cert-ttl -1m0s"},
	} {
		var got time.Duration
		var gotErr error
		app := &cli.App{Flags: upFlags, Action: func(c *cli.Context) error {
			got, gotErr = workloadCertTTL(c)
			return nil
		}}
		if err := app.Run(append([]string{"up"}, c.args...)); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		switch {
		case c.wantErr == "" && gotErr != nil:
			t.Errorf("%v: %v", c.args, gotErr)
		case c.wantErr != "" && (gotErr == nil || !strings.Contains(gotErr.Error(), c.wantErr)):
			t.Errorf("%v: error %v, want one with %q", c.args, gotErr, c.wantErr)
		case got != c.want:
			t.Errorf("%v: %v, want %v", c.args, got, c.want)
		}
	}
}
