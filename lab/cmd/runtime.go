package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/kube"
	"github.com/meshlab/meshlab/lab/local"
)

// openRuntime finds the lab a command acts on from its state directory
// (a kind lab's record, else the local runtime) and returns its Runtime.
// It is the only place that knows there is more than one runtime.
var openRuntime = func(c *cli.Context) (lab.Runtime, error) {
	dir, err := lab.StateDir(c.String("state-dir"))
	if err != nil {
		if c.String("controlplane") == "" {
			return nil, err
		}
		// A control plane named by flag needs no state directory.
		return newRuntime(c, "local", "")
	}
	if _, err := kube.ReadRecord(dir); err == nil {
		return newRuntime(c, "kind", dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the kind lab's record: %w", err)
	}
	return newRuntime(c, "local", dir)
}

// newRuntime is the runtime called name for the lab of dir.
func newRuntime(c *cli.Context, name, dir string) (lab.Runtime, error) {
	switch name {
	case "local":
		return local.Open(dir, local.WithControlPlane(c.String("controlplane"), c.String("token")), local.WithStderr(c.App.ErrWriter))
	case "kind":
		// TODO(issue 10, merge): return kube.Open(...) (lab/kube's
		// lab.Runtime); until then the kind lab's up, down and status are
		// the commands' own, through kindLab.
		cp, err := local.Open(dir, local.WithControlPlane(c.String("controlplane"), c.String("token")), local.WithStderr(c.App.ErrWriter))
		if err != nil {
			return nil, err
		}
		return kindLab{c: c, dir: dir, cp: cp}, nil
	}
	return nil, fmt.Errorf("unknown runtime %q", name)
}

// runningRuntime is the runtime of a lab running in dir ("" for none): the
// local runtime's record names it while its runtime process lives.
func runningRuntime(dir string) string {
	if st, err := lab.ReadStatus(dir); err == nil {
		return st.Runtime
	}
	return ""
}

// kindLab is the kind lab as the commands drove it before lab/kube had a
// lab.Runtime: up, down and status; apply, delete and list talk to the
// control plane as before (--controlplane, e.g. port-forwarded); everything
// else is kubectl's.
//
// TODO(issue 10, merge): delete it (with downKind, readKindStatus and
// printKindStatus) once kube.Open is wired above.
type kindLab struct {
	c   *cli.Context
	dir string
	cp  *local.Lab
}

var errKindNotYet = errors.New("this lab runs on kind: use kubectl for this until meshlab's kube runtime is wired")

func (k kindLab) Name() string { return "kind" }
func (k kindLab) Up(context.Context, lab.UpOptions) error {
	return upKind(k.c, k.dir)
}
func (k kindLab) Down(context.Context, lab.DownOptions) error {
	_, err := downKind(k.c, k.dir)
	return err
}
func (k kindLab) Status(ctx context.Context) (lab.StatusReport, error) {
	rec, err := kube.ReadRecord(k.dir)
	if err != nil {
		return nil, fmt.Errorf("read the kind lab's record: %w", err)
	}
	return kindReport(readKindStatus(ctx, rec, k.c.String("kubeconfig"))), nil
}
func (k kindLab) Apply(ctx context.Context, req lab.ApplyRequest) (lab.ApplyResult, error) {
	return k.cp.Apply(ctx, req)
}
func (k kindLab) Delete(ctx context.Context, refs []lab.ObjectRef) (lab.ApplyResult, error) {
	return k.cp.Delete(ctx, refs)
}
func (k kindLab) List(ctx context.Context, kind, ns, name string) ([]json.RawMessage, error) {
	return k.cp.List(ctx, kind, ns, name)
}
func (k kindLab) Pods(context.Context, string) ([]corev1.Pod, error) { return nil, errKindNotYet }
func (k kindLab) Deployments(context.Context, string) ([]appsv1.Deployment, error) {
	return nil, errKindNotYet
}
func (k kindLab) Services(context.Context, string) ([]corev1.Service, error) {
	return nil, errKindNotYet
}
func (k kindLab) Namespaces(context.Context) ([]corev1.Namespace, error) { return nil, errKindNotYet }
func (k kindLab) RolloutRestart(context.Context, string, string) error   { return errKindNotYet }
func (k kindLab) Scale(context.Context, string, string, int32) error     { return errKindNotYet }
func (k kindLab) Exec(context.Context, lab.ExecOptions) (int, error)     { return 0, errKindNotYet }
func (k kindLab) Logs(context.Context, lab.LogOptions) error             { return errKindNotYet }

// kindReport is `status` of a kind lab: -o json is kindStatus.
type kindReport kindStatus

func (r kindReport) Print(w io.Writer) error { return printKindStatus(w, kindStatus(r)) }
