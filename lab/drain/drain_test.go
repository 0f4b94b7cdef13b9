package drain

import (
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// TestFlag: the flag takes a duration or Istio's whole seconds, from the
// command line or TERMINATION_DRAIN_DURATION_SECONDS, and refuses the rest.
func TestFlag(t *testing.T) {
	tests := []struct {
		args    []string
		env     string
		want    time.Duration
		wantErr bool
	}{
		{want: DefaultDuration},
		{args: []string{"--" + FlagName, "2.5s"}, want: 2500 * time.Millisecond},
		{args: []string{"--" + FlagName, "12"}, want: 12 * time.Second},
		{env: "30", want: 30 * time.Second},
		{env: "30", args: []string{"--" + FlagName, "1s"}, want: time.Second},
		{args: []string{"--" + FlagName, "0"}, wantErr: true},
		{args: []string{"--" + FlagName, "0s"}, wantErr: true},
		{args: []string{"--" + FlagName, "-1s"}, wantErr: true},
		{args: []string{"--" + FlagName, "soon"}, wantErr: true},
		{env: "5m", want: 5 * time.Minute},
		{env: "x", wantErr: true},
	}
	for _, tt := range tests {
		t.Setenv(EnvVar, tt.env)
		var got time.Duration
		app := &cli.App{Name: "t", Flags: []cli.Flag{Flag()}, Action: func(c *cli.Context) error {
			got = FromFlag(c)
			return nil
		}}
		err := app.Run(append([]string{"t"}, tt.args...))
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("args %q env %q: %v, %v; want %v, error %v", tt.args, tt.env, got, err, tt.want, tt.wantErr)
		}
	}
}
