package cmd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"k8s.io/client-go/rest"

	"github.com/meshlab/meshlab/lab/image"
	"github.com/meshlab/meshlab/lab/kind"
	"github.com/meshlab/meshlab/lab/kube"
	"github.com/meshlab/meshlab/lab/kube/install"
)

// kindRuntime is the kind lab of dir as `up --runtime kind` makes it:
// with this binary's image and the mesh installer, its console serving
// under kialiWebRoot ("" for Kiali's /kiali).
func kindRuntime(dir, kialiWebRoot string) *kube.Runtime {
	return kube.NewKind(dir, kube.KindDeps{
		Image: func(ctx context.Context) (kind.Image, error) { return buildImage(ctx, dir) },
		Install: func(ctx context.Context, cfg *rest.Config, ref, bookinfoNamespace, meshConfig string) error {
			return installMesh(ctx, cfg, ref, bookinfoNamespace, meshConfig, kialiWebRoot)
		},
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
func installMesh(ctx context.Context, cfg *rest.Config, ref, bookinfoNamespace, meshConfig, kialiWebRoot string) error {
	in, err := install.New(cfg)
	if err != nil {
		return err
	}
	in.Wait = true
	o, err := in.MeshCA(ctx, install.Options{Image: ref, BookinfoNamespace: bookinfoNamespace, MeshConfig: meshConfig, KialiWebRoot: kialiWebRoot})
	if err != nil {
		return err
	}
	return in.Install(ctx, o)
}
