// Package samples owns the sample applications a lab runs (Bookinfo,
// httpbin and the other samples Istio's tasks use: sleep/curl, helloworld,
// tcp-echo), the `sample` command that starts them, and their manifests and
// Istio configuration, embedded so the binary can bring them up without the
// source tree.
package samples

import (
	"embed"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/samples/bookinfo"
	"github.com/meshlab/meshlab/samples/extauthz"
	"github.com/meshlab/meshlab/samples/helloworld"
	"github.com/meshlab/meshlab/samples/httpbin"
	"github.com/meshlab/meshlab/samples/sleep"
	tcpecho "github.com/meshlab/meshlab/samples/tcp-echo"
)

// FS holds the sample manifests and Istio YAML at their source-tree paths
// relative to samples/, e.g. "bookinfo/networking/virtual-service-all-v1.yaml".
//
//go:embed bookinfo/bookinfo.yaml bookinfo/networking/*.yaml httpbin/httpbin.yaml
//go:embed sleep/sleep.yaml curl/curl.yaml helloworld/helloworld.yaml tcp-echo/*.yaml extauthz/ext-authz.yaml
var FS embed.FS

// Paths of the main files in FS.
const (
	BookinfoManifestPath = "bookinfo/bookinfo.yaml"
	BookinfoGatewayPath  = "bookinfo/networking/bookinfo-gateway.yaml"
	HTTPBinManifestPath  = "httpbin/httpbin.yaml"
	BookinfoNetworking   = "bookinfo/networking"

	SleepManifestPath           = "sleep/sleep.yaml"
	CurlManifestPath            = "curl/curl.yaml"
	HelloworldManifestPath      = "helloworld/helloworld.yaml"
	TCPEchoManifestPath         = "tcp-echo/tcp-echo.yaml"
	TCPEchoServicesManifestPath = "tcp-echo/tcp-echo-services.yaml"
	ExtAuthzManifestPath        = "extauthz/ext-authz.yaml"
)

// ExtAuthzManifest returns the ext-authz Service (http 8000, grpc 9000) and
// Deployment: the external authorizer of CUSTOM AuthorizationPolicies.
func ExtAuthzManifest() []byte { return mustRead(ExtAuthzManifestPath) }

// BookinfoManifest returns the Services, ServiceAccounts and Deployments of Bookinfo.
func BookinfoManifest() []byte { return mustRead(BookinfoManifestPath) }

// BookinfoGateway returns the Gateway and VirtualService exposing the product page.
func BookinfoGateway() []byte { return mustRead(BookinfoGatewayPath) }

// HTTPBinManifest returns the Service, ServiceAccount and Deployment of httpbin.
func HTTPBinManifest() []byte { return mustRead(HTTPBinManifestPath) }

// SleepManifest returns the sleep client: ServiceAccount, Service and Deployment.
func SleepManifest() []byte { return mustRead(SleepManifestPath) }

// CurlManifest returns the curl client, Istio's newer name for sleep.
func CurlManifest() []byte { return mustRead(CurlManifestPath) }

// HelloworldManifest returns the helloworld Service and its v1 and v2 Deployments.
func HelloworldManifest() []byte { return mustRead(HelloworldManifestPath) }

// TCPEchoManifest returns the tcp-echo Service and one Deployment answering "hello".
func TCPEchoManifest() []byte { return mustRead(TCPEchoManifestPath) }

// TCPEchoServicesManifest returns the tcp-echo Service with v1 ("one") and
// v2 ("two") Deployments, for TCP traffic shifting.
func TCPEchoServicesManifest() []byte { return mustRead(TCPEchoServicesManifestPath) }

func mustRead(name string) []byte {
	b, err := FS.ReadFile(name)
	if err != nil {
		// The embed directive above guarantees the file; reaching here is a build bug.
		panic("samples: embedded " + name + " missing: " + err.Error())
	}
	return b
}

// Command returns `sample`, with one subcommand per sample application.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "sample",
		Usage: "run a sample application (the process inside a sample pod)",
		Description: `Runs one of the sample applications in the foreground. The lab's manifests
start these inside pods; running them by hand is useful for debugging.

Examples:
   meshlab sample bookinfo productpage
   SERVICE_VERSION=v2 meshlab sample bookinfo reviews
   meshlab sample httpbin --addr :8000
   meshlab sample sleep                     # also: meshlab sample curl
   SERVICE_VERSION=v2 meshlab sample helloworld
   meshlab sample tcp-echo 9000,9001 hello
   meshlab sample ext-authz                 # HTTP checks on 8000, gRPC on 9000`,
		Subcommands: []*cli.Command{bookinfo.Command(), httpbin.Command(), sleep.Command(), helloworld.Command(), tcpecho.Command(), extauthz.Command()},
	}
}
