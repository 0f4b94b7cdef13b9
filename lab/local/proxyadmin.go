package local

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/podnet"
)

// ControlPlane is the lab's control plane, on the host: nothing is held.
func (l *Lab) ControlPlane(context.Context) (*api.Client, func(), error) {
	return l.client(), func() {}, nil
}

// maxAdminBody bounds what ProxyAdmin reads: a config dump of a large mesh
// is megabytes, never hundreds.
const maxAdminBody = 256 << 20

// ProxyAdmin reads path from the admin port of a pod's proxy, which listens
// on the pod's loopback only, from inside the pod's network namespace.
func (l *Lab) ProxyAdmin(ctx context.Context, ns, pod, path string) ([]byte, error) {
	st, err := lab.ReadStatus(l.dir)
	if err != nil {
		return nil, err
	}
	p, err := st.FindPod(ns, pod)
	if err != nil {
		return nil, err
	}
	var body []byte
	err = podnet.Do(p.Netns, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lab.ProxyAdminPort)))
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		// Without the deadline a stuck proxy would hang the command.
		if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("admin %s: %s", path, resp.Status)
		}
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxAdminBody))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s of the proxy of %s/%s: %w", path, p.Namespace, p.Name, err)
	}
	return body, nil
}
