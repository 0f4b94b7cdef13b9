package cmd

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab/kindnet"
)

func TestKindNetOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     string // $NODE_NAME
		want    kindnet.Options
		wantErr string
	}{
		{
			name: "as the DaemonSet runs it", args: []string{"--pod-subnet=10.244.0.0/16"}, env: "meshlab-worker",
			want: kindnet.Options{NodeName: "meshlab-worker", CNIConfDir: "/etc/cni/net.d", PodSubnet: netip.MustParsePrefix("10.244.0.0/16")},
		},
		{
			name: "every flag", args: []string{"--pod-subnet=10.250.0.1/16", "--node-name=n1", "--cni-conf-dir=/tmp/cni"}, env: "ignored",
			want: kindnet.Options{NodeName: "n1", CNIConfDir: "/tmp/cni", PodSubnet: netip.MustParsePrefix("10.250.0.0/16")},
		},
		{name: "no pod subnet", env: "n1", wantErr: `Required flag "pod-subnet" not set`},
		{name: "pod subnet not a CIDR", args: []string{"--pod-subnet=10.244.0.0"}, env: "n1", wantErr: `--pod-subnet "10.244.0.0": want an IPv4 CIDR`},
		{name: "IPv6 pod subnet", args: []string{"--pod-subnet=fd00::/48"}, env: "n1", wantErr: "want an IPv4 CIDR"},
		{name: "no node name", args: []string{"--pod-subnet=10.244.0.0/16"}, wantErr: "--node-name: want the node this runs on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NODE_NAME", tc.env)
			var got kindnet.Options
			app := &cli.App{Name: "meshlab", Writer: &bytes.Buffer{}, ErrWriter: &bytes.Buffer{}, ExitErrHandler: func(*cli.Context, error) {},
				Flags: kindnetFlags(), Action: func(c *cli.Context) error {
					var err error
					got, err = kindnetOptions(c)
					return err
				}}
			err := app.Run(append([]string{"kindnet"}, tc.args...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Log == nil {
				t.Error("no logger")
			}
			got.Log = nil
			if got != tc.want {
				t.Errorf("options = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestKindNetCommand(t *testing.T) {
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &out, ExitErrHandler: func(*cli.Context, error) {},
			Commands: []*cli.Command{KindNet()}}
		err := app.Run(append([]string{"meshlab"}, args...))
		return out.String(), err
	}
	top, err := run("--help")
	if err != nil || strings.Contains(top, "kindnet") {
		t.Errorf("meshlab --help lists the hidden kindnet (err %v):\n%s", err, top)
	}
	help, err := run("kindnet", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"run a kind lab's pod network", "--pod-subnet", "--node-name", "--cni-conf-dir", "10-meshlab.conflist", "ip meshlab-kindnet"} {
		if !strings.Contains(help, want) {
			t.Errorf("meshlab kindnet --help does not say %q:\n%s", want, help)
		}
	}
	// Outside a pod it stops before touching this host's network.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := run("kindnet", "--pod-subnet=10.244.0.0/16", "--node-name=n1"); err == nil || !strings.Contains(err.Error(), "runs in a cluster's pod") {
		t.Errorf("kindnet outside a cluster = %v; want it to say it runs in a pod", err)
	}
}
