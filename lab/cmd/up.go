package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/kind"
	"github.com/meshlab/meshlab/lab/local"
	"github.com/meshlab/meshlab/samples"
)

var upFlags = []cli.Flag{
	stateDirFlag,
	&cli.StringFlag{Name: "runtime", Value: "auto", Usage: "auto, local or kind"},
	&cli.StringFlag{Name: "bookinfo-namespace", Value: "default", Usage: "namespace bookinfo runs in"},
	&cli.StringFlag{Name: "host-addr", Value: "127.0.0.1", Usage: "host address the gateway and API are published on"},
	&cli.IntFlag{Name: "http-port", Value: 8080, Usage: "host port of the gateway's HTTP listener (8080)"},
	&cli.IntFlag{Name: "https-port", Value: 8443, Usage: "host port of the gateway's HTTPS listener (8443)"},
	&cli.IntFlag{Name: "api-port", Value: 15014, Usage: "host port of the control plane API (15014)"},
	&cli.StringSliceFlag{Name: "manifest", Usage: "also run the Services and Deployments of this Kubernetes manifest `FILE` (repeatable)"},
	&cli.BoolFlag{Name: "no-bookinfo", Usage: "leave bookinfo out (the control plane and gateway only, plus --manifest)"},
	&cli.IntFlag{Name: "nodes", Aliases: []string{"kind-workers"}, Usage: "kind runtime: `N` worker nodes besides the control plane"},
	&cli.StringFlag{Name: "allow-shared-ip", Usage: "kind runtime: MetalLB sharing `KEY` for the gateway Service (metallb.universe.tf/allow-shared-ip)"},
}

// Up is `meshlab up`.
func Up() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "start a lab: control plane, ingress gateway and bookinfo with sidecars",
		Description: `Brings up istiod, istio-ingressgateway and the bookinfo sample, each
bookinfo pod with an istio-proxy sidecar, and publishes the gateway on
127.0.0.1:8080. Shows each step with its elapsed time. The lab keeps running
after up returns; stop it with meshlab down.

--runtime auto picks kind when a container engine answers, else local. The
local runtime needs root (it creates network namespaces).

Examples:
   sudo meshlab up
   curl -s http://127.0.0.1:8080/productpage | grep -o '<title>.*</title>'

   # bookinfo where the Istio walkthrough has it
   sudo meshlab up --bookinfo-namespace book-demo

   # a second lab directory, other ports
   sudo meshlab up --state-dir /tmp/lab2 --http-port 18080 --api-port 25014

   # your own workloads instead of bookinfo (pods whose template says
   # sidecar.istio.io/inject: "false" get no sidecar)
   sudo meshlab up --no-bookinfo --manifest my-app.yaml`,
		Flags: upFlags,
		Action: func(c *cli.Context) error {
			dir, err := lab.StateDir(c.String("state-dir"))
			if err != nil {
				return err
			}
			out := c.App.Writer
			if st, err := lab.ReadStatus(dir); err == nil {
				fmt.Fprintf(out, "The lab is already up (runtime %s, %s, pid %d).\n", st.Runtime, st.Phase, st.PID)
				printURLs(out, st, dir)
				fmt.Fprintln(out, "`meshlab status` shows it; `meshlab down` stops it.")
				return nil
			}
			rt, why, err := pickRuntime(c.String("runtime"))
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Runtime: %s (%s)\n", rt, why)
			if rt == "kind" {
				return upKind(c, dir)
			}
			if err := preflightLocal(); err != nil {
				return err
			}
			if err := local.CheckOwner(dir); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			return startDaemon(c, dir)
		},
	}
}

// pickRuntime chooses the runtime and says why. auto picks kind only when an
// engine answers and kind's library can drive it, so a machine with just a
// docker client keeps the local runtime.
func pickRuntime(flag string) (string, string, error) {
	switch flag {
	case "local":
		return "local", "asked for with --runtime local", nil
	case "kind":
		e, err := kind.Usable()
		if err != nil {
			return "", "", cli.Exit("--runtime kind: "+err.Error(), 1)
		}
		return "kind", "asked for with --runtime kind; engine at " + e.Socket, nil
	case "auto", "":
		e, err := kind.Usable()
		if err == nil {
			return "kind", "a container engine answers at " + e.Socket, nil
		}
		if errors.Is(err, kind.ErrNoEngine) {
			return "local", "no container engine answers", nil
		}
		return "local", err.Error(), nil
	}
	return "", "", cli.Exit(fmt.Sprintf("--runtime %q: want auto, local or kind", flag), 2)
}

// preflightLocal fails at once, with what is missing, where the local runtime
// cannot run.
func preflightLocal() error {
	if os.Geteuid() != 0 {
		return cli.Exit("the local runtime needs root to create network namespaces, a bridge and nftables rules: run `sudo meshlab up` (or use --runtime kind with Docker)", 1)
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return cli.Exit("this kernel has no network namespaces (/proc/self/ns/net is missing); the local runtime needs them", 1)
	}
	return nil
}

// startDaemon starts the lab's runtime process, detached, and follows its
// progress until the lab is ready or failed.
func startDaemon(c *cli.Context, dir string) error {
	if err := lab.PrepareStateDir(dir); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the meshlab binary: %w", err)
	}
	logPath := filepath.Join(dir, lab.DaemonLog)
	logf, err := lab.CreateLog(logPath, false)
	if err != nil {
		return fmt.Errorf("open runtime log: %w", err)
	}
	// The runtime writes the log through its own descriptor; ours only
	// hands it over.
	defer func() { _ = logf.Close() }()
	if err := os.Remove(filepath.Join(dir, lab.StatusFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the last lab's status: %w", err)
	}
	args := []string{"lab-daemon", "--state-dir", dir}
	for _, f := range []string{"bookinfo-namespace", "host-addr"} {
		args = append(args, "--"+f, c.String(f))
	}
	for _, f := range []string{"http-port", "https-port", "api-port"} {
		args = append(args, "--"+f, strconv.Itoa(c.Int(f)))
	}
	for _, m := range c.StringSlice("manifest") {
		// The daemon may resolve paths elsewhere; and a missing file should
		// fail here, where the person reads the error.
		abs, err := filepath.Abs(m)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", m, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		args = append(args, "--manifest", abs)
	}
	if c.Bool("no-bookinfo") {
		args = append(args, "--no-bookinfo")
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the lab runtime: %w", err)
	}
	pid := cmd.Process.Pid
	if err := lab.WriteFile(filepath.Join(dir, lab.PIDFile), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		// down finds the runtime through its status record too.
		fmt.Fprintf(c.App.ErrWriter, "warning: record the runtime's pid: %v\n", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	out := c.App.Writer
	start := time.Now()
	printed := 0
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.Done():
			return c.Err()
		case err := <-exited:
			st, _ := readStatusAnyway(dir)
			printSteps(out, st, &printed)
			return fmt.Errorf("the lab runtime exited (%v): %s\nits log: %s\n%s", err, st.Error, logPath, tail(logPath, 15))
		case <-tick.C:
		}
		st, err := readStatusAnyway(dir)
		if err != nil {
			continue
		}
		printSteps(out, st, &printed)
		switch st.Phase {
		case lab.PhaseRunning:
			fmt.Fprintf(out, "Lab is up in %.1fs.\n", time.Since(start).Seconds())
			printURLs(out, st, dir)
			return nil
		case lab.PhaseFailed:
			// The status says why; how the runtime then exited is told too.
			exit := <-exited
			return fmt.Errorf("the lab did not come up: %s (the runtime exited: %v)\nits log: %s\n%s", st.Error, exit, logPath, tail(logPath, 15))
		}
	}
}

func readStatusAnyway(dir string) (lab.Status, error) {
	var st lab.Status
	b, err := os.ReadFile(filepath.Join(dir, lab.StatusFile))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func printSteps(w io.Writer, st lab.Status, printed *int) {
	for ; *printed < len(st.Steps); *printed++ {
		s := st.Steps[*printed]
		if !s.Done && s.Error == "" {
			return
		}
		mark := "✓"
		if s.Error != "" {
			mark = "✗"
		}
		fmt.Fprintf(w, "%s %-22s %-44s %6.1fs\n", mark, s.Name, s.Detail, s.Elapsed.Seconds())
	}
}

func printURLs(w io.Writer, st lab.Status, dir string) {
	fmt.Fprintf(w, "productpage:   %s\n", st.URLs.ProductPage)
	fmt.Fprintf(w, "control plane: %s (its API wants the token in %s, which meshlab sends)\n", st.URLs.ControlPlane, filepath.Join(dir, lab.APITokenFile))
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// LabDaemon is the hidden `meshlab lab-daemon`: the lab's runtime process,
// started detached by up.
func LabDaemon() *cli.Command {
	return &cli.Command{
		Name:   "lab-daemon",
		Usage:  "run the local runtime in the foreground (started by up)",
		Hidden: true,
		Flags:  upFlags,
		Action: func(c *cli.Context) error {
			dir, err := lab.StateDir(c.String("state-dir"))
			if err != nil {
				return err
			}
			// Checked again here: the runtime may be started without up.
			if err := lab.PrepareStateDir(dir); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			// c.Context ends on SIGTERM (main catches it; down sends it):
			// local.Run then stops every pod, each draining within its grace
			// period, and removes the lab's network, as down would.
			ctx := c.Context
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			var manifests []local.Manifest
			for _, m := range c.StringSlice("manifest") {
				b, err := os.ReadFile(m)
				if err != nil {
					return fmt.Errorf("read manifest: %w", err)
				}
				manifests = append(manifests, local.Manifest{Source: m, Data: b})
			}
			err = local.Run(ctx, local.Options{
				StateDir:          dir,
				Self:              self,
				BookinfoNamespace: c.String("bookinfo-namespace"),
				Bookinfo:          samples.BookinfoManifest(),
				BookinfoGateway:   samples.BookinfoGateway(),
				NoBookinfo:        c.Bool("no-bookinfo"),
				Manifests:         manifests,
				HostAddr:          c.String("host-addr"),
				HTTPPort:          c.Int("http-port"),
				HTTPSPort:         c.Int("https-port"),
				APIPort:           c.Int("api-port"),
				Logger:            log,
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Error("lab runtime failed", "err", err)
				return err
			}
			return nil
		},
	}
}
