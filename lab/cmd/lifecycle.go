package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/kube"
	"github.com/meshlab/meshlab/lab/local"
	"github.com/meshlab/meshlab/lab/process"
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
			dir, err := lab.StateDir(c.String("state-dir"))
			if err != nil {
				return err
			}
			if done, err := downKind(c, dir); done {
				return err
			}
			out := c.App.Writer
			start := time.Now()
			if err := local.CheckOwner(dir); err != nil {
				return cli.Exit(err.Error()+"; this down is for "+dir+", which has no lab running", 1)
			}
			if pid := readPID(dir); lab.Alive(pid) {
				// Cleaning up under a runtime that could not be signalled
				// would pull its network from under live pods; ESRCH is a
				// runtime that exited since Alive looked.
				if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
					return fmt.Errorf("stop the lab runtime (pid %d): %w", pid, err)
				}
				// The runtime drains and stops every pod, then removes the
				// network; if it is stuck, what is left is killed and
				// cleaned up below.
				deadline := time.Now().Add(local.StopTimeout)
				for lab.Alive(pid) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if lab.Alive(pid) {
					if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
						return fmt.Errorf("kill the lab runtime (pid %d): %w", pid, err)
					}
				}
			}
			ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
			defer cancel()
			if err := local.Cleanup(ctx); err != nil {
				return fmt.Errorf("clean up the lab: %w", err)
			}
			left, err := local.Network.Leftovers()
			if err != nil {
				return err
			}
			if len(left) > 0 {
				return fmt.Errorf("the lab left these behind: %s", strings.Join(left, ", "))
			}
			// A pid file left behind would have the next down signal
			// whatever process reuses that pid.
			for _, f := range []string{lab.StatusFile, lab.PIDFile} {
				if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("remove the stopped lab's record: %w", err)
				}
			}
			local.Release(dir)
			if c.Bool("purge") {
				if os.Geteuid() == 0 {
					if _, err := lab.CheckStateDir(dir); err != nil {
						return cli.Exit("not purging: "+err.Error(), 1)
					}
				}
				if err := os.RemoveAll(dir); err != nil {
					return fmt.Errorf("purge %s: %w", dir, err)
				}
				fmt.Fprintf(out, "✓ lab down in %.1fs; %s removed\n", time.Since(start).Seconds(), dir)
				return nil
			}
			fmt.Fprintf(out, "✓ lab down in %.1fs; config kept in %s\n", time.Since(start).Seconds(), filepath.Join(dir, lab.ControlPlaneDir))
			return nil
		},
	}
}

func readPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, lab.PIDFile))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
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
			dir, err := lab.StateDir(c.String("state-dir"))
			if err != nil {
				return err
			}
			if rec, err := kube.ReadRecord(dir); err == nil {
				ks := readKindStatus(c.Context, rec, c.String("kubeconfig"))
				if o == "json" {
					return writeJSON(c.App.Writer, ks)
				}
				return printKindStatus(c.App.Writer, ks)
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("read the kind lab's record: %w", err)
			}
			st, err := lab.ReadStatus(dir)
			if errors.Is(err, lab.ErrNotUp) {
				if o == "json" {
					return writeJSON(c.App.Writer, map[string]string{"phase": "NotRunning"})
				}
				fmt.Fprintln(c.App.Writer, "No lab is running (start one with `meshlab up`).")
				return nil
			}
			if err != nil {
				return err
			}
			if o == "json" {
				return writeJSON(c.App.Writer, st)
			}
			w := tabwriter.NewWriter(c.App.Writer, 0, 4, 3, ' ', 0)
			fmt.Fprintf(w, "Lab: %s (runtime %s, pid %d, up %s)\n\n", st.Phase, st.Runtime, st.PID, time.Since(st.StartedAt).Round(time.Second))
			fmt.Fprintln(w, "NAMESPACE\tNAME\tREADY\tSTATUS\tRESTARTS\tIP")
			for _, p := range st.Pods {
				running, restarts := 0, 0
				for _, ct := range p.Containers {
					if ct.Running {
						running++
					}
					restarts += ct.Restarts
				}
				ready := fmt.Sprintf("%d/%d", running, len(p.Containers))
				if !p.Ready {
					ready = fmt.Sprintf("0/%d", len(p.Containers))
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", p.Namespace, p.Name, ready, p.Phase, restarts, p.IP)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer)
			printURLs(c.App.Writer, st, dir)
			return nil
		},
	}
}

// Exec is `meshlab exec`.
func Exec() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command inside a pod's network (the kubectl exec analogue)",
		ArgsUsage: "POD -- COMMAND [ARGS...]",
		Description: `POD is a pod's name, or a Deployment's or app's name meaning its first ready
pod. The command runs on the host's filesystem inside the pod's network
namespace, so its traffic goes through the pod's sidecar. Like kubectl exec
it runs as the container does: as its user, without capabilities, with
no_new_privs and a container's environment. Without -c, in the app's
container.

Examples:
   meshlab exec -n default ratings -- curl -sS productpage:9080/productpage
   meshlab exec -n default ratings -- id
   meshlab exec -n istio-system istiod -- ss -ltn`,
		Flags: []cli.Flag{stateDirFlag, namespaceFlag, containerFlag},
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			if len(args) < 2 {
				return cli.Exit("usage: meshlab exec -n NAMESPACE POD -- COMMAND [ARGS...]", 2)
			}
			p, err := findPod(c, args[0])
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			argv := args[1:]
			if argv[0] == "--" {
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return cli.Exit("usage: meshlab exec -n NAMESPACE POD -- COMMAND [ARGS...]", 2)
			}
			ct, err := pickContainer(p, c.String("container"))
			if err != nil {
				return err
			}
			nsArgs := []string{process.NSExecName, "--net", p.Netns,
				"--uid", strconv.FormatUint(uint64(ct.UID), 10), "--gid", strconv.FormatUint(uint64(ct.GID), 10), "--dir", "/", "--"}
			// Not bound to c.Context: the command's signals are its own, as
			// with kubectl exec. Ctrl-C reaches it from the terminal (it is
			// in our process group); SIGTERM and SIGHUP sent to meshlab are
			// passed on, and meshlab waits for the command to exit.
			cmd := exec.Command(self, append(nsArgs, argv...)...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.App.Writer, c.App.ErrWriter
			// A container's environment, not the caller's: like kubectl exec,
			// and so no http_proxy of the host sends pod traffic elsewhere.
			home := "/"
			if ct.UID == 0 {
				home = "/root"
			}
			cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home, "TERM=" + os.Getenv("TERM"),
				"POD_NAME=" + p.Name, "POD_NAMESPACE=" + p.Namespace, "HOSTNAME=" + p.Name}
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer signal.Stop(sigs)
			if err := cmd.Start(); err != nil {
				return fmt.Errorf("exec in %s/%s: %w", p.Namespace, p.Name, err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
		wait:
			for {
				select {
				case s := <-sigs:
					if s != os.Interrupt {
						_ = cmd.Process.Signal(s)
					}
				case err = <-exited:
					break wait
				}
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return cli.Exit("", ee.ExitCode())
			}
			return err
		},
	}
}

func findPod(c *cli.Context, name string) (lab.Pod, error) {
	dir, err := lab.StateDir(c.String("state-dir"))
	if err != nil {
		return lab.Pod{}, err
	}
	st, err := lab.ReadStatus(dir)
	if err != nil {
		return lab.Pod{}, err
	}
	return st.FindPod(c.String("namespace"), name)
}

// Logs is `meshlab logs`.
func Logs() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print a container's log",
		ArgsUsage: "POD",
		Description: `Without -c, prints the app's container (or the only container).

Examples:
   meshlab logs -n default productpage
   meshlab logs -n default reviews-v2 -c istio-proxy
   meshlab logs -n istio-system istio-ingressgateway`,
		Flags: []cli.Flag{stateDirFlag, namespaceFlag, containerFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("usage: meshlab logs -n NAMESPACE POD [-c CONTAINER]", 2)
			}
			p, err := findPod(c, c.Args().First())
			if err != nil {
				return err
			}
			pick, err := pickContainer(p, c.String("container"))
			if err != nil {
				return err
			}
			b, err := os.ReadFile(pick.Log)
			if err != nil {
				return fmt.Errorf("read log of %s/%s/%s: %w", p.Namespace, p.Name, pick.Name, err)
			}
			_, err = c.App.Writer.Write(b)
			return err
		},
	}
}

var containerFlag = &cli.StringFlag{Name: "container", Aliases: []string{"c"}, Usage: "container name (default: the app's)"}

// pickContainer finds a pod's container by name; without one, the app's
// (the last that is not istio-proxy), as kubectl's default container.
func pickContainer(p lab.Pod, want string) (lab.Container, error) {
	var pick *lab.Container
	var names []string
	for i, ct := range p.Containers {
		names = append(names, ct.Name)
		if ct.Name == want || (want == "" && (pick == nil || pick.Name == "istio-proxy")) {
			pick = &p.Containers[i]
		}
	}
	if pick == nil {
		return lab.Container{}, cli.Exit(fmt.Sprintf("pod %s/%s has no container %q; it has %s", p.Namespace, p.Name, want, strings.Join(names, ", ")), 1)
	}
	return *pick, nil
}
