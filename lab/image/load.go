package image

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
)

// LoadEngine loads img, tagged ref, into the Docker (or Podman) engine that
// answers on the unix socket sock, as `docker load` does: the tarball is
// streamed to POST /images/load, never written to disk.
func LoadEngine(ctx context.Context, sock, ref string, img v1.Image) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(WriteTarball(pw, ref, img)) }()
	defer func() { _ = pr.Close() }() // stops the writer if the request ends early; a pipe's Close never fails
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://engine/images/load", pr)
	if err != nil {
		return fmt.Errorf("load the image into the engine: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := UnixClient(sock).Do(req)
	if err != nil {
		return fmt.Errorf("load the image into the engine at %s: %w", sock, err)
	}
	defer func() { _ = resp.Body.Close() }() // read: its errors came from the reads
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("load the image into the engine at %s: %s: %s", sock, resp.Status, strings.TrimSpace(string(b)))
	}
	// The engine answers 200 at once and reports a failure inside the JSON
	// stream that follows.
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("load the image into the engine at %s: read its answer: %w", sock, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("load the image into the engine at %s: %s", sock, msg.Error)
		}
	}
}

// UnixClient is an HTTP client for an engine API on a unix socket.
func UnixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

// LoadNodes loads the image tarball open reads into every node that does
// not hold image id under ref yet, through kind's own loading (containerd's
// import on the node), as `kind load image-archive` does. open is called
// once per node that needs it, and not at all when none does.
func LoadNodes(open func() (io.ReadCloser, error), ref, id string, ns []nodes.Node) (loaded int, err error) {
	for _, n := range ns {
		if have, err := nodeutils.ImageID(n, ref); err == nil && have == id {
			continue
		}
		f, err := open()
		if err != nil {
			return loaded, fmt.Errorf("load the image into node %s: %w", n, err)
		}
		err = nodeutils.LoadImageArchive(n, f)
		_ = f.Close() // read only
		if err != nil {
			return loaded, fmt.Errorf("load the image into node %s: %w", n, err)
		}
		loaded++
	}
	return loaded, nil
}

// Ping reports whether an engine API answers on the unix socket sock.
func Ping(sock string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://engine/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := UnixClient(sock).Do(req)
	if err != nil {
		return fmt.Errorf("no container engine answers at %s: %w", sock, err)
	}
	_ = resp.Body.Close() // unread: only the status matters
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the container engine at %s answers %s to a ping", sock, resp.Status)
	}
	return nil
}
