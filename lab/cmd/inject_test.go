package cmd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestInjectCommand(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		stdin   string
		proxies int
		image   string
		err     string
	}{
		{name: "bookinfo", args: []string{"-f", "../../samples/bookinfo/bookinfo.yaml", "--image", "meshlab.local/meshlab:v9"}, proxies: 6, image: "meshlab.local/meshlab:v9"},
		{name: "stdin", args: []string{"-f", "-"}, stdin: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: a}]}\n", proxies: 1, image: "meshlab.local/meshlab:" + Version},
		{name: "missing file", args: []string{"-f", "nope.yaml"}, err: "read nope.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &errOut, Reader: strings.NewReader(tt.stdin),
				Commands: []*cli.Command{Inject()}, ExitErrHandler: func(*cli.Context, error) {}}
			err := app.Run(append([]string{"meshlab", "inject"}, tt.args...))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(out.String(), "name: istio-proxy"); n != tt.proxies {
				t.Errorf("%d istio-proxy containers, want %d", n, tt.proxies)
			}
			if n := strings.Count(out.String(), "image: "+tt.image); n < 2*tt.proxies {
				t.Errorf("%d containers of image %s, want at least %d", n, tt.image, 2*tt.proxies)
			}
			if n := strings.Count(errOut.String(), ": injected ("); n != tt.proxies {
				t.Errorf("stderr says %d injected, want %d:\n%s", n, tt.proxies, errOut.String())
			}
		})
	}
}
