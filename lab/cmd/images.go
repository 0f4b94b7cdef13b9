package cmd

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab/imagebundle"
	"github.com/meshlab/meshlab/lab/metallb"
)

func nodeImageFlag() cli.Flag {
	return &cli.StringFlag{Name: "node-image", Usage: "kind node image `REF` (default: the one kind pins, lab/kind.NodeImage)"}
}

// metallbImageFlags are MetalLB's image overrides, the same on up and on
// images list|save so that an archive holds what up runs.
func metallbImageFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "metallb-controller-image", Usage: "kind runtime: MetalLB controller image `REF` (default " + metallb.ControllerImage + ")"},
		&cli.StringFlag{Name: "metallb-speaker-image", Usage: "kind runtime: MetalLB speaker image `REF` (default " + metallb.SpeakerImage + ")"},
	}
}

// metallbImages are the MetalLB images the flags name.
func metallbImages(c *cli.Context) metallb.Images {
	return metallb.Images{Controller: c.String("metallb-controller-image"), Speaker: c.String("metallb-speaker-image")}
}

// Images is `meshlab images`: the images a kind lab needs, for a workshop
// room without internet.
func Images() *cli.Command {
	return &cli.Command{
		Name:  "images",
		Usage: "list or save into one archive the images a kind lab needs (for air-gapped workshops)",
		Description: `A kind lab needs kind's node image, MetalLB's controller and speaker and the
meshlab image (built from this binary). On a machine with internet, pull the
first three with docker (meshlab images list says which), then write all four
into one archive with meshlab images save; carry the archive into the room.

Examples:
   # on a machine with internet
   meshlab images list | xargs -n1 docker pull
   meshlab images save lab-images.tar
   # another node image, from an engine on its own socket
   meshlab images save --node-image kindest/node:v1.37.0 --docker-host unix:///run/docker2.sock lab-images.tar
   # in the room, without internet: up loads it first
   sudo meshlab up --runtime kind --images lab-images.tar
   # the offline node image scripts/kind-testenv builds
   meshlab images save --node-image meshlab.local/kind-node:v1.34.4 lab-images.tar`,
		Subcommands: []*cli.Command{imagesList(), imagesSave()},
	}
}

func imagesList() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "print the image refs a kind lab pulls (node image and MetalLB), one a line",
		ArgsUsage: " ",
		Description: `meshlab's own image is not listed: it is built from this binary.

Examples:
   meshlab images list
   meshlab images list --node-image kindest/node:v1.37.0 | xargs -n1 docker pull`,
		Flags: append([]cli.Flag{nodeImageFlag()}, metallbImageFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return cli.Exit(fmt.Sprintf("images list: takes no arguments, got %q", strings.Join(c.Args().Slice(), " ")), 2)
			}
			for _, r := range imagebundle.Refs(c.String("node-image"), metallbImages(c)) {
				if _, err := fmt.Fprintln(c.App.Writer, r); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func imagesSave() *cli.Command {
	return &cli.Command{
		Name:      "save",
		Usage:     "write every image a kind lab needs into one docker-save archive FILE",
		ArgsUsage: "FILE",
		Description: `Takes the node image and MetalLB's images from the Docker engine at
--docker-host (each must be there: docker pull it first), builds the meshlab
image from this binary, and writes all of them to FILE in docker save's
format, loadable with docker load. Nothing is written when an image is
missing; FILE appears only once complete.

Examples:
   meshlab images save lab-images.tar
   meshlab images save -o json --node-image kindest/node:v1.37.0 lab-images.tar`,
		Flags: append([]cli.Flag{
			nodeImageFlag(),
			&cli.StringFlag{Name: "docker-host", Usage: "the Docker engine's `unix://SOCKET` (default: $DOCKER_HOST, else unix:///var/run/docker.sock)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "output format: text or json"},
		}, metallbImageFlags()...),
		Action: func(c *cli.Context) error {
			out, err := checkOutput(c, "text", "json")
			if err != nil {
				return err
			}
			if c.NArg() != 1 || c.Args().First() == "" {
				return cli.Exit("images save: name the archive FILE to write, e.g. meshlab images save lab-images.tar", 2)
			}
			sock, err := dockerSocket(c.String("docker-host"))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			refs := imagebundle.Refs(c.String("node-image"), metallbImages(c))
			// Before the build: a missing image is the likelier failure.
			if err := imagebundle.Check(c.Context, sock, refs); err != nil {
				return err
			}
			progress := c.App.ErrWriter
			if out == "text" {
				progress = c.App.Writer
			}
			dir, err := os.MkdirTemp("", "meshlab-images-")
			if err != nil {
				return fmt.Errorf("images save: %w", err)
			}
			defer func() { _ = os.RemoveAll(dir) }() // the build's scratch
			mesh, err := buildImage(c.Context, dir)
			if err != nil {
				return fmt.Errorf("images save: build the meshlab image: %w", err)
			}
			res, err := imagebundle.Save(c.Context, imagebundle.Options{
				File: c.Args().First(), Sock: sock, Refs: refs,
				MeshlabArchive: mesh.Archive, MeshlabRef: mesh.Ref, Progress: progress,
			})
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(c.App.Writer, res)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			_, _ = fmt.Fprintln(tw, "IMAGE\tID\tBYTES")
			for _, im := range res.Images {
				_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\n", im.Ref, im.ID, im.Bytes)
			}
			return tw.Flush()
		},
	}
}

// dockerSocket is the unix socket of the engine flag names: the flag, else
// $DOCKER_HOST, else Docker's default.
func dockerSocket(flag string) (string, error) {
	host := flag
	what := "--docker-host"
	if host == "" {
		host, what = os.Getenv("DOCKER_HOST"), "DOCKER_HOST"
	}
	if host == "" {
		return "/var/run/docker.sock", nil
	}
	if strings.HasPrefix(host, "/") {
		return host, nil
	}
	sock, ok := strings.CutPrefix(host, "unix://")
	if !ok || sock == "" {
		return "", fmt.Errorf("%s %q: want unix:///path/to/docker.sock (only a local engine's socket)", what, host)
	}
	return sock, nil
}
