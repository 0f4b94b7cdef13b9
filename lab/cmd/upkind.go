package cmd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/rest"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/image"
	"github.com/meshlab/meshlab/lab/kind"
	"github.com/meshlab/meshlab/lab/kube"
	"github.com/meshlab/meshlab/lab/kube/install"
)

// upKind is `up --runtime kind`: the lab on a kind cluster, in the
// foreground (the cluster outlives up; there is no runtime process).
func upKind(c *cli.Context, dir string) error {
	// Before anything is built or cached in it.
	if err := lab.PrepareStateDir(dir); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	ctx := c.Context // ends on SIGINT or SIGTERM (main catches them)
	engine, err := kind.Usable()
	if err != nil {
		return cli.Exit("--runtime kind: "+err.Error(), 1)
	}
	p, err := kind.NewProvider()
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if len(c.StringSlice("manifest")) > 0 {
		return cli.Exit("--manifest is for the local runtime; on kind, kubectl apply -f it after up", 2)
	}
	ns := c.String("bookinfo-namespace")
	if c.Bool("no-bookinfo") {
		ns = ""
	}
	return kube.Up(ctx, kube.Options{
		Cluster: kind.Cluster{
			Name:      kind.DefaultName,
			Workers:   c.Int("nodes"),
			HostAddr:  c.String("host-addr"),
			HTTPPort:  c.Int("http-port"),
			HTTPSPort: c.Int("https-port"),
		},
		StateDir: dir,
		Image:    func(ctx context.Context) (kind.Image, error) { return buildImage(ctx, dir) },
		Subnets: func(ctx context.Context) ([]netip.Prefix, error) {
			return engine.NetworkSubnets(ctx, kind.NetworkName())
		},
		Install:           installMesh,
		BookinfoNamespace: ns,
		SharedIPKey:       c.String("allow-shared-ip"),
		Out:               c.App.Writer,
	}, p)
}

// buildImage builds the meshlab image from this binary (or, when this one
// cannot run in a linux container, from the source in the working
// directory) into the state directory.
func buildImage(ctx context.Context, dir string) (kind.Image, error) {
	arch := runtime.GOARCH
	cache := filepath.Join(dir, "image")
	wd, _ := os.Getwd()
	bin, err := image.Binary(ctx, arch, wd, cache, "-X github.com/meshlab/meshlab/lab/cmd.Version="+Version)
	if err != nil {
		return kind.Image{}, err
	}
	img, err := image.Build(bin, arch)
	if err != nil {
		return kind.Image{}, err
	}
	id, err := image.ID(img)
	if err != nil {
		return kind.Image{}, err
	}
	ref := image.Ref(Version)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return kind.Image{}, fmt.Errorf("image: %w", err)
	}
	archive := filepath.Join(cache, "meshlab.tar")
	if err := image.WriteFile(archive, ref, img); err != nil {
		return kind.Image{}, err
	}
	return kind.Image{Archive: archive, Ref: ref, ID: id}, nil
}

// installMesh is lab/kube/install for the kind lab, with the cluster's
// mesh CA (the cacerts Secret, made on the first up and kept after).
func installMesh(ctx context.Context, cfg *rest.Config, ref, bookinfoNamespace string) error {
	in, err := install.New(cfg)
	if err != nil {
		return err
	}
	in.Wait = true
	o, err := in.MeshCA(ctx, install.Options{Image: ref, BookinfoNamespace: bookinfoNamespace})
	if err != nil {
		return err
	}
	return in.Install(ctx, o)
}

// downKind is down for a kind lab: it deletes the cluster when the state
// directory records one. It reports whether there was a kind lab.
func downKind(c *cli.Context, dir string) (bool, error) {
	rec, err := kube.ReadRecord(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("read the kind lab's record: %w", err)
	}
	p, err := kind.NewProvider()
	if err != nil {
		return true, cli.Exit(err.Error(), 1)
	}
	return true, kube.Down(c.Context, dir, rec.Cluster, p, c.App.Writer)
}
