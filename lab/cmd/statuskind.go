package cmd

import (
	"context"
	"io"

	"github.com/meshlab/meshlab/lab/kube"
)

// readKindStatus and printKindStatus keep `status` of a kind lab working
// until it goes through lab.Runtime; the status itself is lab/kube's.
//
// TODO(issue 10): delete with the lifecycle rewiring (Runtime.Status).
func readKindStatus(ctx context.Context, rec kube.Record, kubeconfig string) *kube.Status {
	return kube.StatusOf(ctx, rec, kubeconfig)
}

func printKindStatus(w io.Writer, st *kube.Status) error { return st.Print(w) }
