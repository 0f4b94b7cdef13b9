package cmd

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/controlplane/api"
)

// TestPrintResourcesTable: get's table shows each resource's name, kind and
// hosts; an item that does not decode fails the command instead of printing
// as a blank or partial row that reads like a real resource.
func TestPrintResourcesTable(t *testing.T) {
	const vs = `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService",` +
		`"metadata":{"name":"reviews","namespace":"default"},"spec":{"hosts":["reviews"]}}`
	tests := []struct {
		name    string
		items   []string
		want    []string // substrings of the output
		wantErr string   // substring of the error; "" for none
	}{
		{name: "virtualservice", items: []string{vs}, want: []string{"NAME", "reviews", "VirtualService", `["reviews"]`}},
		{name: "not an object", items: []string{vs, `"reviews"`}, wantErr: "decode item 1"},
		{name: "hosts not a list", items: []string{
			`{"kind":"VirtualService","metadata":{"name":"ratings"},"spec":{"hosts":"ratings"}}`,
		}, wantErr: "decode item 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var list api.ResourceList
			for _, it := range tt.items {
				list.Items = append(list.Items, json.RawMessage(it))
			}
			var out, errOut bytes.Buffer
			app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &errOut, ExitErrHandler: func(*cli.Context, error) {},
				Commands: []*cli.Command{{Name: "get", Action: func(c *cli.Context) error {
					return printResources(c, "table", list, false)
				}}}}
			err := app.Run([]string{"meshlab", "get", "vs"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q; output:\n%s", err, tt.wantErr, out.String())
				}
				if out.Len() != 0 {
					t.Errorf("a list that fails to decode printed:\n%s", out.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
