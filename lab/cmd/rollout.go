package cmd

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab"
)

// deploymentArgs reads the Deployments a rollout or scale names, as kubectl
// takes them: deployment/NAME... (also deploy/, deployments/,
// deployment.apps/), or deployment NAME.... With all, the kind alone
// names every Deployment of the namespace (all is then true), as
// kubectl rollout restart deployment does.
func deploymentArgs(args []string, usage string, allowAll bool) ([]string, bool, error) {
	bad := func(format string, a ...any) error {
		return cli.Exit(fmt.Sprintf(format, a...)+"\n"+usage, 2)
	}
	isDeployment := func(k string) bool {
		kind, ok := lookupKubeKind(k)
		return ok && kind == deploymentKind
	}
	if len(args) == 0 {
		return nil, false, bad("name a Deployment: deployment/NAME, deploy/NAME or deployment NAME")
	}
	var names []string
	if !strings.Contains(args[0], "/") {
		if !isDeployment(args[0]) {
			return nil, false, bad("%q: meshlab acts on Deployments only; want deployment/NAME, deploy/NAME or deployment NAME", args[0])
		}
		if len(args) == 1 {
			if allowAll {
				return nil, true, nil
			}
			return nil, false, bad("name the Deployment: %s NAME", args[0])
		}
		for _, n := range args[1:] {
			if strings.Contains(n, "/") {
				return nil, false, bad("%q: after a kind, give bare names (deployment NAME...), or give every one as deployment/NAME", n)
			}
			names = append(names, n)
		}
		return names, false, nil
	}
	for _, a := range args {
		k, n, ok := strings.Cut(a, "/")
		if !ok || n == "" || strings.Contains(n, "/") {
			return nil, false, bad("%q: want deployment/NAME", a)
		}
		if !isDeployment(k) {
			return nil, false, bad("%q: meshlab acts on Deployments only; want deployment/NAME", a)
		}
		names = append(names, n)
	}
	return names, false, nil
}

// flagUsageError makes a flag urfave/cli could not parse (--replicas abc,
// an unknown flag) a usage error, exit 2, with the command's usage.
func flagUsageError(usage string) cli.OnUsageErrorFunc {
	return func(_ *cli.Context, err error, _ bool) error {
		return cli.Exit(err.Error()+"\n"+usage, 2)
	}
}

// Rollout is `meshlab rollout` (restart), as kubectl's.
func Rollout() *cli.Command {
	const usage = "usage: meshlab rollout restart deployment/NAME... | deployment [-n NAMESPACE]"
	return &cli.Command{
		Name:  "rollout",
		Usage: "manage a Deployment's rollout, as kubectl rollout",
		Description: `meshlab has kubectl's rollout restart; for the rest (status, history, undo),
watch the pods with meshlab get pods, or use kubectl on a kind cluster.

Examples:
   meshlab rollout restart deployment/reviews-v1 -n default
   meshlab rollout restart --help`,
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.ShowSubcommandHelp(c)
			}
			return cli.Exit(fmt.Sprintf("meshlab rollout %s: not a rollout command meshlab has; it has restart\n%s", c.Args().First(), usage), 2)
		},
		Subcommands: []*cli.Command{{
			Name:      "restart",
			Usage:     "replace a Deployment's pods one at a time, new pod ready before an old one leaves",
			ArgsUsage: "deployment/NAME... | deployment NAME...",
			Description: `Restarts a Deployment as kubectl rollout restart does: its pod template gets
a new kubectl.kubernetes.io/restartedAt annotation and the pods are replaced by
a rolling update (maxSurge 25%, maxUnavailable 25%, as Kubernetes' defaults),
so the Deployment keeps serving. New sidecars pick up the mesh configuration
as it is now. The same on the local runtime and on a kind cluster. It returns
once the restart has been asked for; watch it with meshlab get pods.

Examples:
   meshlab rollout restart deployment/reviews-v1 -n default
   meshlab rollout restart deploy/productpage-v1 deploy/details-v1
   meshlab rollout restart deployment ratings-v1 -n book-demo

   # every Deployment of the namespace, as kubectl (after a defaultConfig change)
   meshlab rollout restart deployment -n book-demo`,
			Flags:        []cli.Flag{namespaceFlag, stateDirFlag, cpFlag, tokenFlag},
			OnUsageError: flagUsageError(usage),
			Action: func(c *cli.Context) error {
				return eachDeployment(c, usage, "restarted", true, func(rt lab.Runtime, ns, n string) error {
					if err := rt.RolloutRestart(c.Context, ns, n); err != nil {
						return fmt.Errorf("rollout restart deployment %s/%s: %w", ns, n, err)
					}
					return nil
				})
			},
		}},
	}
}

// Scale is `meshlab scale`, as kubectl's for Deployments.
func Scale() *cli.Command {
	const usage = "usage: meshlab scale deployment/NAME... --replicas N [-n NAMESPACE]"
	return &cli.Command{
		Name:      "scale",
		Usage:     "set a Deployment's number of replicas",
		ArgsUsage: "deployment/NAME... | deployment NAME...",
		Description: `Sets spec.replicas as kubectl scale does; the runtime then adds or removes
pods, and the mesh's endpoints follow them as they become ready or leave. The
same on the local runtime and on a kind cluster.

Examples:
   meshlab scale deployment/reviews-v1 --replicas 3 -n default
   meshlab scale deploy/httpbin --replicas=0 -n foo
   meshlab scale deployment productpage-v1 --replicas 2`,
		Flags: []cli.Flag{namespaceFlag, stateDirFlag, cpFlag, tokenFlag,
			&cli.IntFlag{Name: "replicas", Usage: "the number of pods wanted (0 or more); required"}},
		OnUsageError: flagUsageError(usage),
		Action: func(c *cli.Context) error {
			if !c.IsSet("replicas") {
				return cli.Exit("--replicas is required: how many pods the Deployment should run\n"+usage, 2)
			}
			replicas := c.Int("replicas")
			if replicas < 0 || replicas > 1<<31-1 {
				return cli.Exit(fmt.Sprintf("--replicas %d: want 0 or more\n%s", replicas, usage), 2)
			}
			return eachDeployment(c, usage, "scaled", false, func(rt lab.Runtime, ns, n string) error {
				if err := rt.Scale(c.Context, ns, n, int32(replicas)); err != nil {
					return fmt.Errorf("scale deployment %s/%s to %d: %w", ns, n, replicas, err)
				}
				return nil
			})
		},
	}
}

// eachDeployment does fn to every Deployment the arguments name, in the
// runtime of the lab, saying `deployment.apps/NAME done` for each as
// kubectl does.
func eachDeployment(c *cli.Context, usage, done string, all bool, fn func(rt lab.Runtime, ns, name string) error) error {
	names, every, err := deploymentArgs(c.Args().Slice(), usage, all)
	if err != nil {
		return err
	}
	rt, err := openRuntime(c)
	if err != nil {
		return err
	}
	ns := c.String("namespace")
	if every {
		ds, err := rt.Deployments(c.Context, ns)
		if err != nil {
			return explain(err)
		}
		for _, d := range ds {
			names = append(names, d.Name)
		}
		if len(names) == 0 {
			return cli.Exit(fmt.Sprintf("no Deployments in namespace %q", ns), 1)
		}
	}
	for _, n := range names {
		if err := fn(rt, ns, n); err != nil {
			return explain(err)
		}
		fmt.Fprintf(c.App.Writer, "deployment.apps/%s %s\n", n, done)
	}
	return nil
}
