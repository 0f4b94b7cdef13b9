package cmd

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab"
)

// Down is `meshlab down`.
func Down() *cli.Command {
	return &cli.Command{
		Name:  "down",
		Usage: "stop the lab and remove everything it put on the machine (the store is kept)",
		Description: `Stops every pod of the lab and removes its network namespaces, veths, bridge
and nftables rules. The control plane's store (your applied config) is kept
for the next up, unless --purge.

Examples:
   sudo meshlab down
   sudo meshlab down --purge     # forget the applied config too`,
		Flags: []cli.Flag{stateDirFlag, &cli.BoolFlag{Name: "purge", Usage: "also delete the state directory and its store"}},
		Action: func(c *cli.Context) error {
			rt, err := openRuntime(c)
			if err != nil {
				return err
			}
			return rt.Down(c.Context, lab.DownOptions{Purge: c.Bool("purge"), Out: c.App.Writer})
		},
	}
}

// Status is `meshlab status`.
func Status() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the lab's pods, their phase, IPs and restarts, and its URLs",
		Description: `For a kind lab (up --runtime kind) it asks the cluster: the gateway's
external IP and the pods of istio-system and bookinfo, as kubectl shows them.

Examples:
   meshlab status
   meshlab status -o json | jq '.pods[] | {name, ready}'`,
		Flags: []cli.Flag{stateDirFlag, outputFlag,
			&cli.StringFlag{Name: "kubeconfig", Usage: "kubeconfig `PATH` of a kind lab's cluster (default $KUBECONFIG, else ~/.kube/config)", EnvVars: []string{"KUBECONFIG"}}},
		Action: func(c *cli.Context) error {
			o, err := checkOutput(c, "table", "json")
			if err != nil {
				return err
			}
			rt, err := openRuntime(c)
			if err != nil {
				return err
			}
			rep, err := rt.Status(c.Context)
			if err != nil {
				return err
			}
			if o == "json" {
				return writeJSON(c.App.Writer, rep)
			}
			return rep.Print(c.App.Writer)
		},
	}
}

// Exec is `meshlab exec`.
func Exec() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command inside a pod's network (the kubectl exec analogue)",
		ArgsUsage: "POD -- COMMAND [ARGS...]",
		Description: `POD is a pod's name, deploy/NAME for a Deployment's first ready pod (else
its newest), or a Deployment's or app's name meaning its first ready pod.
The command runs on the host's filesystem inside the pod's network
namespace, so its traffic goes through the pod's sidecar. Like kubectl exec
it runs as the container does: as its user, without capabilities, with
no_new_privs and a container's environment. Without -c, in the app's
container.

Examples:
   meshlab exec -n default ratings -- curl -sS productpage:9080/productpage
   meshlab exec -n default ratings -- id
   meshlab exec -n foo deploy/sleep -- curl -sS http://httpbin.foo:8000/ip
   meshlab exec -n default deploy/ratings-v1 -c istio-proxy -- id -u
   meshlab exec -n istio-system istiod -- ss -ltn

The exit code is the command's.`,
		Flags: []cli.Flag{stateDirFlag, namespaceFlag, containerFlag},
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			if len(args) < 2 {
				return cli.Exit("usage: meshlab exec -n NAMESPACE POD -- COMMAND [ARGS...]", 2)
			}
			argv := args[1:]
			if argv[0] == "--" {
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return cli.Exit("usage: meshlab exec -n NAMESPACE POD -- COMMAND [ARGS...]", 2)
			}
			rt, err := openRuntime(c)
			if err != nil {
				return err
			}
			code, err := rt.Exec(c.Context, lab.ExecOptions{Namespace: c.String("namespace"), Pod: args[0], Container: c.String("container"),
				Command: argv, Stdin: os.Stdin, Stdout: c.App.Writer, Stderr: c.App.ErrWriter})
			if err != nil {
				return err
			}
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

// Logs is `meshlab logs`.
func Logs() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print a container's log",
		ArgsUsage: "POD",
		Description: `POD is as for exec: a pod's name, deploy/NAME, or a Deployment's or app's
name. Without -c, prints the app's container (or the only container). With
-f, keeps printing what the container writes (across its restarts) until
Ctrl-C.

Examples:
   meshlab logs -n default productpage
   meshlab logs -n default reviews-v2 -c istio-proxy
   meshlab logs -n default deploy/reviews-v2 -c istio-proxy -f
   meshlab logs -n istio-system istio-ingressgateway`,
		Flags: []cli.Flag{stateDirFlag, namespaceFlag, containerFlag,
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing what the container writes"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("usage: meshlab logs -n NAMESPACE POD [-c CONTAINER] [-f]", 2)
			}
			rt, err := openRuntime(c)
			if err != nil {
				return err
			}
			return rt.Logs(c.Context, lab.LogOptions{Namespace: c.String("namespace"), Pod: c.Args().First(),
				Container: c.String("container"), Follow: c.Bool("follow"), Out: c.App.Writer})
		},
	}
}

var containerFlag = &cli.StringFlag{Name: "container", Aliases: []string{"c"}, Usage: "container name (default: the app's)"}
