// Package samples owns the sample applications a lab runs (Bookinfo and
// httpbin), the `sample` command that starts them, and their manifests and
// Istio configuration, embedded so the binary can bring up Bookinfo without
// the source tree.
package samples

import (
	"embed"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/samples/bookinfo"
	"github.com/meshlab/meshlab/samples/httpbin"
)

// FS holds the sample manifests and Istio YAML at their source-tree paths
// relative to samples/, e.g. "bookinfo/networking/virtual-service-all-v1.yaml".
//
//go:embed bookinfo/bookinfo.yaml bookinfo/networking/*.yaml httpbin/httpbin.yaml
var FS embed.FS

// Paths of the main files in FS.
const (
	BookinfoManifestPath = "bookinfo/bookinfo.yaml"
	BookinfoGatewayPath  = "bookinfo/networking/bookinfo-gateway.yaml"
	HTTPBinManifestPath  = "httpbin/httpbin.yaml"
	BookinfoNetworking   = "bookinfo/networking"
)

// BookinfoManifest returns the Services, ServiceAccounts and Deployments of Bookinfo.
func BookinfoManifest() []byte { return mustRead(BookinfoManifestPath) }

// BookinfoGateway returns the Gateway and VirtualService exposing the product page.
func BookinfoGateway() []byte { return mustRead(BookinfoGatewayPath) }

// HTTPBinManifest returns the Service, ServiceAccount and Deployment of httpbin.
func HTTPBinManifest() []byte { return mustRead(HTTPBinManifestPath) }

func mustRead(name string) []byte {
	b, err := FS.ReadFile(name)
	if err != nil {
		// The embed directive above guarantees the file; reaching here is a build bug.
		panic("samples: embedded " + name + " missing: " + err.Error())
	}
	return b
}

// Command returns `sample`, with the subcommands `bookinfo <svc>` and `httpbin`.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "sample",
		Usage: "run a sample application (the process inside a sample pod)",
		Description: `Runs one of the sample applications in the foreground. The lab's manifests
start these inside pods; running them by hand is useful for debugging.

Examples:
   meshlab sample bookinfo productpage
   SERVICE_VERSION=v2 meshlab sample bookinfo reviews
   meshlab sample httpbin --addr :8000`,
		Subcommands: []*cli.Command{bookinfo.Command(), httpbin.Command()},
	}
}
