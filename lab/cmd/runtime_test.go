package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/kube"
)

// recorder is a lab.Runtime that records what the commands ask of it, to
// show they pass their flags through and handle its answers the same
// whatever runtime it is.
type recorder struct {
	lab.Runtime // every other method panics: not called by these commands
	exec        lab.ExecOptions
	logs        lab.LogOptions
	down        lab.DownOptions
	code        int
}

func (r *recorder) Exec(_ context.Context, o lab.ExecOptions) (int, error) {
	r.exec = o
	return r.code, nil
}

func (r *recorder) Logs(_ context.Context, o lab.LogOptions) error {
	r.logs = o
	_, err := io.WriteString(o.Out, "a log line\n")
	return err
}

func (r *recorder) Down(_ context.Context, o lab.DownOptions) error {
	r.down = o
	return nil
}

func (r *recorder) Status(context.Context) (lab.StatusReport, error) { return fakeReport{}, nil }

type fakeReport struct{}

func (fakeReport) Print(w io.Writer) error { _, err := io.WriteString(w, "the table\n"); return err }
func (fakeReport) MarshalJSON() ([]byte, error) {
	return []byte(`{"phase":"Somewhere"}`), nil
}

func TestCommandsGoThroughTheRuntime(t *testing.T) {
	rec := &recorder{}
	saved := openRuntime
	openRuntime = func(*cli.Context) (lab.Runtime, error) { return rec, nil }
	defer func() { openRuntime = saved }()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &out, ExitErrHandler: func(*cli.Context, error) {},
			Commands: []*cli.Command{Exec(), Logs(), Down(), Status()}}
		err := app.Run(Intersperse(app, append([]string{"meshlab"}, args...)))
		return out.String(), err
	}

	rec.code = 3
	_, err := run("exec", "-n", "foo", "deploy/sleep", "-c", "sleep", "--", "curl", "-sS", "httpbin:8000")
	var exit cli.ExitCoder
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("exec of a command that exits 3: %v, want exit code 3", err)
	}
	if e := rec.exec; e.Namespace != "foo" || e.Pod != "deploy/sleep" || e.Container != "sleep" || strings.Join(e.Command, " ") != "curl -sS httpbin:8000" {
		t.Errorf("exec asked the runtime for %+v", e)
	}
	rec.code = 0
	if _, err := run("exec", "-n", "foo", "deploy/sleep", "--", "true"); err != nil {
		t.Errorf("exec of a command that exits 0: %v", err)
	}
	if _, err := run("exec", "-n", "foo", "deploy/sleep", "--"); err == nil {
		t.Error("exec without a command succeeded")
	}

	out, err := run("logs", "-n", "foo", "deploy/httpbin", "-c", "istio-proxy", "-f")
	if err != nil || out != "a log line\n" {
		t.Errorf("logs: %v %q", err, out)
	}
	if l := rec.logs; l.Namespace != "foo" || l.Pod != "deploy/httpbin" || l.Container != "istio-proxy" || !l.Follow {
		t.Errorf("logs asked the runtime for %+v", l)
	}

	if _, err := run("down", "--purge"); err != nil || !rec.down.Purge {
		t.Errorf("down --purge: %v, asked for %+v", err, rec.down)
	}
	if out, err := run("status"); err != nil || out != "the table\n" {
		t.Errorf("status: %v %q", err, out)
	}
	if out, err := run("status", "-o", "json"); err != nil || strings.TrimSpace(out) != "{\n  \"phase\": \"Somewhere\"\n}" {
		t.Errorf("status -o json: %v %q", err, out)
	}
}

func TestOpenRuntime(t *testing.T) {
	kindDir := t.TempDir()
	b, err := json.Marshal(kube.Record{Runtime: "kind", Cluster: "meshlab"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kindDir, kube.RecordFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
		want string
	}{
		{"a kind lab's record", kindDir, "kind"},
		{"no record: the local runtime", t.TempDir(), "local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			app := &cli.App{Name: "meshlab", Writer: io.Discard, ErrWriter: io.Discard, Commands: []*cli.Command{{
				Name: "x", Flags: []cli.Flag{stateDirFlag},
				Action: func(c *cli.Context) error {
					rt, err := openRuntime(c)
					if err != nil {
						return err
					}
					got = rt.Name()
					return nil
				},
			}}}
			if err := app.Run([]string{"meshlab", "x", "--state-dir", tt.dir}); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("runtime %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPrintResult(t *testing.T) {
	var out, errOut bytes.Buffer
	app := &cli.App{Writer: &out, ErrWriter: &errOut}
	c := cli.NewContext(app, nil, nil)
	printResult(c, lab.ApplyResult{Changes: []lab.Change{
		{Ref: lab.RefOfKey("VirtualService/default/reviews"), Op: "created"},
		{Ref: lab.ObjectRef{Group: "apps", Kind: "Deployment", Namespace: "foo", Name: "httpbin"}, Op: "configured"},
		{Ref: lab.ObjectRef{Kind: "Service", Namespace: "foo", Name: "httpbin"}, Op: "unchanged"},
		{Ref: lab.ObjectRef{Kind: "Namespace", Name: "foo"}, Op: "unchanged"},
	}, Warnings: []string{"DestinationRule foo/r: a warning"}}, true)
	if errOut.String() != "Warning: DestinationRule foo/r: a warning\n" {
		t.Errorf("printResult's warnings on stderr: %q", errOut.String())
	}
	want := `virtualservice.networking.istio.io/reviews created (dry run) (namespace default)
deployment.apps/httpbin configured (dry run) (namespace foo)
service/httpbin unchanged (dry run) (namespace foo)
namespace/foo unchanged (dry run)
`
	if out.String() != want {
		t.Errorf("printResult:\n%s\nwant\n%s", out.String(), want)
	}
}
