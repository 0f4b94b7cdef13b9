package capture

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestCommandFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    Options
		wantErr string
	}{
		{name: "defaults", want: DefaultOptions()},
		{
			name: "everything set",
			args: []string{"--proxy-uid", "1000", "--outbound-port", "16001", "--inbound-port", "16006", "--dns-port", "16053",
				"--exclude-inbound-ports", "15090,15021", "--exclude-outbound-cidrs", "10.0.0.0/8"},
			want: Options{ProxyUID: 1000, OutboundPort: 16001, InboundPort: 16006, DNSPort: 16053,
				ExcludeInboundPorts: []uint16{15090, 15021}, ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		},
		{name: "port out of range", args: []string{"--outbound-port", "70000"}, wantErr: "--outbound-port 70000"},
		{name: "bad cidr", args: []string{"--exclude-outbound-cidrs", "nonsense"}, wantErr: "--exclude-outbound-cidrs"},
		{name: "ipv6 cidr", args: []string{"--exclude-outbound-cidrs", "fd00::/8"}, wantErr: "only IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := Command()
			var got Options
			cmd.Action = func(c *cli.Context) (err error) { got, err = optionsFromFlags(c); return err }
			app := &cli.App{Name: "meshlab", Commands: []*cli.Command{cmd}, ExitErrHandler: func(*cli.Context, error) {}}
			err := app.Run(append([]string{"meshlab", "init-redirect"}, tt.args...))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("options = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCommandHelpHasExample(t *testing.T) {
	var buf bytes.Buffer
	app := &cli.App{Name: "meshlab", Writer: &buf, Commands: []*cli.Command{Command()}}
	if err := app.Run([]string{"meshlab", "init-redirect", "--help"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Example", "meshlab init-redirect --proxy-uid 1337", "--exclude-inbound-ports"} {
		if !strings.Contains(buf.String(), want) {
			t.Fatalf("help lacks %q:\n%s", want, buf.String())
		}
	}
}
