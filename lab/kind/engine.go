package kind

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster"

	"github.com/meshlab/meshlab/lab/image"
)

// Engine is a Docker or Podman engine's API on a unix socket, spoken with
// plain net/http.
type Engine struct {
	Socket string
}

// ErrNoEngine says no container engine answers.
var ErrNoEngine = errors.New("no Docker or Podman engine answers")

// EngineSockets are where an engine is looked for, in order: $DOCKER_HOST
// (unix://), Docker's socket, then Podman's rootless and rootful sockets.
func EngineSockets() []string {
	var socks []string
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		socks = append(socks, strings.TrimPrefix(h, "unix://"))
	}
	socks = append(socks, "/var/run/docker.sock")
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		socks = append(socks, filepath.Join(d, "podman", "podman.sock"))
	}
	return append(socks, "/run/podman/podman.sock")
}

// FindEngine returns the first engine that answers a ping.
func FindEngine() (Engine, error) {
	socks := EngineSockets()
	for _, s := range socks {
		if image.Ping(s) == nil {
			return Engine{Socket: s}, nil
		}
	}
	return Engine{}, fmt.Errorf("%w at %s", ErrNoEngine, strings.Join(socks, ", "))
}

// Usable says whether the kind runtime can work here: an engine answers and
// kind's library finds the docker or podman command it drives. The error
// names what is missing and how to get it.
func Usable() (Engine, error) {
	e, err := FindEngine()
	if err != nil {
		return e, fmt.Errorf("%w: start Docker (or Podman: systemctl --user start podman.socket), or use --runtime local", err)
	}
	if _, err := cluster.DetectNodeProvider(); err != nil {
		return e, fmt.Errorf("an engine answers at %s, but kind finds no docker or podman command to drive it: install the Docker CLI (apt-get install docker.io) or Podman, or use --runtime local", e.Socket)
	}
	return e, nil
}

// NetworkSubnets returns the subnets of an engine network (GET
// /networks/<name>).
func (e Engine) NetworkSubnets(ctx context.Context, name string) ([]netip.Prefix, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://engine/networks/"+url.PathEscape(name), nil)
	if err != nil {
		return nil, err
	}
	resp, err := image.UnixClient(e.Socket).Do(req)
	if err != nil {
		return nil, fmt.Errorf("inspect network %s at %s: %w", name, e.Socket, err)
	}
	defer func() { _ = resp.Body.Close() }() // read: ReadAll reports its errors
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("inspect network %s: %w", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("inspect network %s at %s: %s: %s", name, e.Socket, resp.Status, strings.TrimSpace(string(body)))
	}
	return ParseNetwork(body)
}

// RemoveNetwork removes an engine network (DELETE /networks/<name>). A
// network that is gone already, or that other containers still use, is left
// without an error: it is not the caller's to take.
func (e Engine) RemoveNetwork(ctx context.Context, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://engine/networks/"+url.PathEscape(name), nil)
	if err != nil {
		return err
	}
	resp, err := image.UnixClient(e.Socket).Do(req)
	if err != nil {
		return fmt.Errorf("remove network %s at %s: %w", name, e.Socket, err)
	}
	defer func() { _ = resp.Body.Close() }() // read: ReadAll reports its errors
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent, http.StatusNotFound, http.StatusForbidden, http.StatusConflict:
		// 403/409: containers of someone else's are still attached.
		return nil
	}
	return fmt.Errorf("remove network %s at %s: %s: %s", name, e.Socket, resp.Status, strings.TrimSpace(string(body)))
}

// ParseNetwork reads the subnets out of a network's inspect JSON.
func ParseNetwork(body []byte) ([]netip.Prefix, error) {
	var nw struct {
		Name string
		IPAM struct {
			Config []struct{ Subnet string }
		}
	}
	if err := json.Unmarshal(body, &nw); err != nil {
		return nil, fmt.Errorf("read network %s: %w", nw.Name, err)
	}
	var out []netip.Prefix
	for _, c := range nw.IPAM.Config {
		p, err := netip.ParsePrefix(c.Subnet)
		if err != nil {
			return nil, fmt.Errorf("network %s: subnet %q: %w", nw.Name, c.Subnet, err)
		}
		out = append(out, p)
	}
	return out, nil
}
