package cmd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestInstallRender: `meshlab install --render` prints the install without a
// cluster, with the flags applied.
func TestInstallRender(t *testing.T) {
	tests := []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"--render", "--image", "example.local/m:1"},
			[]string{"kind: MutatingWebhookConfiguration", "image: example.local/m:1", "name: productpage-v1", "service:"},
			nil},
		{[]string{"--render", "--bookinfo-namespace", "", "--webhook-url-base", "https://127.0.0.1:15017"},
			[]string{"url: https://127.0.0.1:15017/inject", "url: https://127.0.0.1:15017/validate"},
			[]string{"name: productpage", "kind: Gateway\nmetadata:"}},
		{[]string{"--render", "--kiali-web-root", "/dashboards/kiali"},
			[]string{"- --web-root=/dashboards/kiali", "path: /dashboards/kiali/healthz", "name: http-kiali"},
			nil},
		{[]string{"--render", "--no-console"}, nil, []string{"kiali"}},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		app := &cli.App{Writer: &out, Commands: []*cli.Command{Install(), Uninstall()}}
		if err := app.Run(append([]string{"meshlab", "install"}, tt.args...)); err != nil {
			t.Fatalf("install %q: %v", tt.args, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("install %q: output lacks %q", tt.args, w)
			}
		}
		for _, w := range tt.not {
			if strings.Contains(out.String(), w) {
				t.Errorf("install %q: output has %q", tt.args, w)
			}
		}
	}
}
