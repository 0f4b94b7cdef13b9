package cmd

import (
	"reflect"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestIntersperse(t *testing.T) {
	app := &cli.App{Commands: []*cli.Command{Get(), Exec(), Apply(), Rollout(), Scale(),
		{Name: "raw", SkipFlagParsing: true}}}
	tests := []struct {
		in, want []string
	}{
		{[]string{"m", "get", "vs", "reviews", "-n", "default", "-o", "yaml"},
			[]string{"m", "get", "-n", "default", "-o", "yaml", "vs", "reviews"}},
		{[]string{"m", "get", "vs", "-A"}, []string{"m", "get", "-A", "vs"}},
		{[]string{"m", "get", "vs", "--namespace=x"}, []string{"m", "get", "--namespace=x", "vs"}},
		{[]string{"m", "exec", "ratings", "-n", "default", "--", "curl", "-n", "x"},
			[]string{"m", "exec", "-n", "default", "ratings", "--", "curl", "-n", "x"}},
		{[]string{"m", "apply", "-f", "-", "--wait"}, []string{"m", "apply", "-f", "-", "--wait"}},
		{[]string{"m", "raw", "a", "-n", "b"}, []string{"m", "raw", "a", "-n", "b"}},
		{[]string{"m", "nosuch", "a", "-n"}, []string{"m", "nosuch", "a", "-n"}},
		// A subcommand's flags, after its arguments as kubectl users type them.
		{[]string{"m", "rollout", "restart", "deploy/x", "-n", "ns"}, []string{"m", "rollout", "restart", "-n", "ns", "deploy/x"}},
		{[]string{"m", "rollout", "nosuch", "deploy/x", "-n", "ns"}, []string{"m", "rollout", "nosuch", "deploy/x", "-n", "ns"}},
		{[]string{"m", "scale", "deploy/x", "--replicas", "3"}, []string{"m", "scale", "--replicas", "3", "deploy/x"}},
		{[]string{"m", "get", "pods", "-o", "jsonpath={.items[0].metadata.name}", "-l", "app=a"},
			[]string{"m", "get", "-o", "jsonpath={.items[0].metadata.name}", "-l", "app=a", "pods"}},
	}
	for _, tt := range tests {
		if got := Intersperse(app, tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Intersperse(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
