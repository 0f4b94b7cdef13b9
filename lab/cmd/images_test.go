package cmd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab/image"
	"github.com/meshlab/meshlab/lab/kind"
	"github.com/meshlab/meshlab/lab/metallb"
)

func runImages(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &errOut, ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{Images()}}
	err = app.Run(Intersperse(app, append([]string{"meshlab", "images"}, args...)))
	return out.String(), err
}

func TestImagesList(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"list"}, kind.NodeImage + "\n" + metallb.ControllerImage + "\n" + metallb.SpeakerImage + "\n"},
		{[]string{"list", "--node-image", "example.local/node:v1"}, "example.local/node:v1\n" + metallb.ControllerImage + "\n" + metallb.SpeakerImage + "\n"},
	} {
		got, err := runImages(t, tc.args...)
		if err != nil || got != tc.want {
			t.Errorf("images %v = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
}

// TestImagesErrors: bad flags and arguments, and a missing image, fail
// before anything is built or written.
func TestImagesErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "out.tar")
	noEngine := "unix://" + filepath.Join(dir, "none.sock")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"list with an argument", []string{"list", "x"}, `images list: takes no arguments, got "x"`},
		{"save without FILE", []string{"save", "--docker-host", noEngine}, "name the archive FILE"},
		{"save with two files", []string{"save", "--docker-host", noEngine, file, file}, "name the archive FILE"},
		{"bad output", []string{"save", "-o", "yaml", file}, `--output "yaml": want one of text, json`},
		{"tcp docker host", []string{"save", "--docker-host", "tcp://10.0.0.1:2375", file}, `--docker-host "tcp://10.0.0.1:2375": want unix:///path/to/docker.sock`},
		{"no engine", []string{"save", "--docker-host", noEngine, file}, "no container engine answers"},
	}
	if sock := os.Getenv("MESHLAB_TEST_DOCKER_SOCK"); sock != "" && image.Ping(sock) == nil {
		absent := fmt.Sprintf("meshlab.local/images-test-absent:%d", time.Now().UnixNano())
		cases = append(cases, struct {
			name string
			args []string
			want string
		}{"missing node image", []string{"save", "--docker-host", "unix://" + sock, "--node-image", absent, file}, "docker pull " + absent})
	} else {
		t.Log("MESHLAB_TEST_DOCKER_SOCK unset or not answering: the missing-image case does not run")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runImages(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("images %v: error %v, want one with %q", tc.args, err, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("images %v wrote %v", tc.args, entries)
			}
		})
	}
}

func TestDockerSocket(t *testing.T) {
	for _, tc := range []struct{ flag, env, want, err string }{
		{"", "", "/var/run/docker.sock", ""},
		{"", "unix:///run/d.sock", "/run/d.sock", ""},
		{"unix:///tmp/x.sock", "unix:///run/d.sock", "/tmp/x.sock", ""},
		{"/tmp/y.sock", "", "/tmp/y.sock", ""},
		{"", "ssh://host", "", `DOCKER_HOST "ssh://host"`},
		{"unix://", "", "", `--docker-host "unix://"`},
	} {
		t.Setenv("DOCKER_HOST", tc.env)
		got, err := dockerSocket(tc.flag)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("dockerSocket(%q) with DOCKER_HOST=%q: error %v, want %q", tc.flag, tc.env, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("dockerSocket(%q) with DOCKER_HOST=%q = %q, %v; want %q", tc.flag, tc.env, got, err, tc.want)
		}
	}
}
