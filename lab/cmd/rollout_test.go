package cmd

import (
	"reflect"
	"strings"
	"testing"
)

// TestRolloutRestartAndScale: the Deployment forms kubectl takes reach the
// runtime with the right namespace, name and replicas and print kubectl's
// line; anything else is a usage error (exit 2) saying what is expected,
// before the runtime is asked anything.
func TestRolloutRestartAndScale(t *testing.T) {
	tests := []struct {
		name         string
		args         []string
		wantCode     int
		wantOut      string
		wantStderr   string
		wantRestarts []string
		wantScales   []string
	}{
		{name: "restart deployment/NAME", args: []string{"rollout", "restart", "deployment/reviews-v1", "-n", "default"},
			wantOut: "deployment.apps/reviews-v1 restarted\n", wantRestarts: []string{"default/reviews-v1"}},
		{name: "restart deploy/NAME, default namespace", args: []string{"rollout", "restart", "deploy/productpage-v1"},
			wantOut: "deployment.apps/productpage-v1 restarted\n", wantRestarts: []string{"default/productpage-v1"}},
		{name: "restart deployment NAME...", args: []string{"rollout", "restart", "deployment", "productpage-v1", "reviews-v1"},
			wantOut:      "deployment.apps/productpage-v1 restarted\ndeployment.apps/reviews-v1 restarted\n",
			wantRestarts: []string{"default/productpage-v1", "default/reviews-v1"}},
		{name: "restart deployments.apps/NAME, namespace first", args: []string{"rollout", "restart", "-n", "legacy", "deployments.apps/sleep"},
			wantOut: "deployment.apps/sleep restarted\n", wantRestarts: []string{"legacy/sleep"}},
		{name: "restart missing", args: []string{"rollout", "restart", "deploy/nosuch", "-n", "foo"}, wantCode: 1,
			wantStderr: `rollout restart deployment foo/nosuch: deployments.apps "nosuch" not found`},
		{name: "restart nothing", args: []string{"rollout", "restart"}, wantCode: 2,
			wantStderr: "name a Deployment: deployment/NAME, deploy/NAME or deployment NAME"},
		{name: "restart a daemonset", args: []string{"rollout", "restart", "daemonset/x"}, wantCode: 2,
			wantStderr: `"daemonset/x": meshlab acts on Deployments only; want deployment/NAME`},
		{name: "restart every deployment of the namespace", args: []string{"rollout", "restart", "deployment"},
			wantOut: "deployment.apps/productpage-v1 restarted\ndeployment.apps/reviews-v1 restarted\n", wantRestarts: []string{"default/productpage-v1", "default/reviews-v1"}},
		{name: "scale kind without name", args: []string{"scale", "deployment", "--replicas", "2"}, wantCode: 2,
			wantStderr: "name the Deployment: deployment NAME"},
		{name: "restart empty name", args: []string{"rollout", "restart", "deploy/"}, wantCode: 2,
			wantStderr: `"deploy/": want deployment/NAME`},
		{name: "restart mixed forms", args: []string{"rollout", "restart", "deploy", "deploy/x"}, wantCode: 2,
			wantStderr: "give bare names"},

		{name: "rollout status", args: []string{"rollout", "status", "deploy/reviews-v1"}, wantCode: 2,
			wantStderr: "meshlab rollout status: not a rollout command meshlab has; it has restart"},

		{name: "scale", args: []string{"scale", "deployment/reviews-v1", "--replicas", "3", "-n", "default"},
			wantOut: "deployment.apps/reviews-v1 scaled\n", wantScales: []string{"default/reviews-v1=3"}},
		{name: "scale to zero, flag first", args: []string{"scale", "--replicas=0", "deploy/sleep", "-n", "legacy"},
			wantOut: "deployment.apps/sleep scaled\n", wantScales: []string{"legacy/sleep=0"}},
		{name: "scale deployment NAME", args: []string{"scale", "deployment", "productpage-v1", "--replicas", "2"},
			wantOut: "deployment.apps/productpage-v1 scaled\n", wantScales: []string{"default/productpage-v1=2"}},
		{name: "scale without replicas", args: []string{"scale", "deploy/reviews-v1"}, wantCode: 2,
			wantStderr: "--replicas is required"},
		{name: "scale negative", args: []string{"scale", "deploy/reviews-v1", "--replicas", "-1"}, wantCode: 2,
			wantStderr: "--replicas -1: want 0 or more"},
		{name: "scale, replicas not a number", args: []string{"scale", "deploy/reviews-v1", "--replicas", "three"}, wantCode: 2,
			wantStderr: "usage: meshlab scale deployment/NAME... --replicas N"},
		{name: "restart, unknown flag", args: []string{"rollout", "restart", "deploy/reviews-v1", "--wait"}, wantCode: 2,
			wantStderr: "flag provided but not defined: -wait\nusage: meshlab rollout restart"},
		{name: "scale a pod", args: []string{"scale", "pod/x", "--replicas", "1"}, wantCode: 2,
			wantStderr: `"pod/x": meshlab acts on Deployments only`},
		{name: "scale missing", args: []string{"scale", "deploy/nosuch", "--replicas", "1"}, wantCode: 1,
			wantStderr: `scale deployment default/nosuch to 1: deployments.apps "nosuch" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := getFixture()
			out, errOut, code := runCLI(t, rt, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, errOut)
			}
			if out != tt.wantOut {
				t.Errorf("stdout:\n%q\nwant:\n%q", out, tt.wantOut)
			}
			if tt.wantStderr == "" && errOut != "" || !strings.Contains(errOut, tt.wantStderr) {
				t.Errorf("stderr:\n%s\nwant %q", errOut, tt.wantStderr)
			}
			if !reflect.DeepEqual(rt.restarts, tt.wantRestarts) {
				t.Errorf("restarts %q, want %q", rt.restarts, tt.wantRestarts)
			}
			if !reflect.DeepEqual(rt.scales, tt.wantScales) {
				t.Errorf("scales %q, want %q", rt.scales, tt.wantScales)
			}
		})
	}
}
