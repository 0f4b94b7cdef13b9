package cmd

import (
	"reflect"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestIntersperse(t *testing.T) {
	app := &cli.App{Commands: []*cli.Command{Get(), Exec(), Apply(),
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
	}
	for _, tt := range tests {
		if got := Intersperse(app, tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Intersperse(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
