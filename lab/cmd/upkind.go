package cmd

import (
	"context"
	"errors"
	"fmt"
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
	return kindRuntime(dir).Up(c.Context, lab.UpOptions{ // c.Context ends on SIGINT or SIGTERM (main catches them)
		BookinfoNamespace: c.String("bookinfo-namespace"),
		NoBookinfo:        c.Bool("no-bookinfo"),
		Manifests:         c.StringSlice("manifest"),
		HostAddr:          c.String("host-addr"),
		HTTPPort:          c.Int("http-port"),
		HTTPSPort:         c.Int("https-port"),
		Nodes:             c.Int("nodes"),
		SharedIPKey:       c.String("allow-shared-ip"),
		Out:               c.App.Writer,
	})
}

// kindRuntime is the kind lab of the state directory dir, able to come up:
// with this binary's image and the mesh installer.
func kindRuntime(dir string) *kube.Runtime {
	return kube.NewKind(dir, kube.KindDeps{
		Image:   func(ctx context.Context) (kind.Image, error) { return buildImage(ctx, dir) },
		Install: installMesh,
	})
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
	if _, err := kube.ReadRecord(dir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return true, kindRuntime(dir).Down(c.Context, lab.DownOptions{Purge: c.Bool("purge"), Out: c.App.Writer})
}
