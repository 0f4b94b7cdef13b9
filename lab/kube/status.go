package kube

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/kube/install"
)

// Status is the lab.StatusReport of a cluster: `status -o json` encodes
// it as it is.
type Status struct {
	Runtime    string    `json:"runtime"` // "kind" (or "kube")
	Phase      string    `json:"phase"`   // Running, or Unreachable when the cluster does not answer
	Error      string    `json:"error,omitempty"`
	Cluster    string    `json:"cluster"`
	Context    string    `json:"context"`
	Pool       string    `json:"pool"`
	ExternalIP string    `json:"externalIP"`
	StartedAt  time.Time `json:"startedAt"`
	URLs       lab.URLs  `json:"urls"`
	Pods       []PodRow  `json:"pods"`
}

// PodRow is a pod as kubectl get pods shows it.
type PodRow struct {
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Ready      string `json:"ready"` // "2/2"
	Status     string `json:"status"`
	Restarts   int32  `json:"restarts"`
	IP         string `json:"ip,omitempty"`
	Node       string `json:"node,omitempty"`
	Containers int    `json:"containers"`
}

// StatusOf is the status of the kind lab of rec, reached through
// kubeconfig (client-go's default loading rules when "") at the record's
// context.
func StatusOf(ctx context.Context, rec Record, kubeconfig string) *Status {
	r := &Runtime{kubeconfig: kubeconfig, context: rec.Context}
	return readStatus(ctx, rec, r.restConfig)
}

// readStatus asks the cluster of the record for the gateway's address and
// the pods of istio-system and bookinfo. A cluster that does not answer is
// a status, not an error: the record still says what the lab was.
func readStatus(ctx context.Context, rec Record, config func() (*rest.Config, error)) *Status {
	runtime := rec.Runtime
	if runtime == "" {
		runtime = "kind"
	}
	st := &Status{Runtime: runtime, Phase: "Running", Cluster: rec.Cluster, Context: rec.Context, Pool: rec.Pool,
		ExternalIP: rec.ExternalIP, StartedAt: rec.CreatedAt, URLs: lab.URLs{ProductPage: rec.URL}}
	fail := func(err error) *Status {
		st.Phase, st.Error = "Unreachable", err.Error()
		st.URLs = gatewayURLs(st.URLs, st.ExternalIP)
		return st
	}
	cfg, err := config()
	if err != nil {
		return fail(err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 10 * time.Second
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fail(err)
	}
	svc, err := kc.CoreV1().Services(GatewayNamespace).Get(ctx, GatewayService, metav1.GetOptions{})
	if err != nil {
		return fail(fmt.Errorf("the gateway Service %s/%s: %w", GatewayNamespace, GatewayService, err))
	}
	if ing := svc.Status.LoadBalancer.Ingress; len(ing) > 0 && ing[0].IP != "" {
		st.ExternalIP = ing[0].IP
	}
	st.URLs = gatewayURLs(st.URLs, st.ExternalIP)

	namespaces := []string{install.Namespace}
	if rec.BookinfoNamespace != "" {
		namespaces = append(namespaces, rec.BookinfoNamespace)
	} else {
		// A record from before bookinfo was recorded, or a cluster with
		// no record: the namespaces labelled for injection are the mesh's.
		nss, err := kc.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: install.InjectionLabel + "=enabled"})
		if err != nil {
			return fail(fmt.Errorf("list namespaces: %w", err))
		}
		for _, ns := range nss.Items {
			namespaces = append(namespaces, ns.Name)
		}
	}
	for _, ns := range namespaces {
		pods, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fail(fmt.Errorf("list the pods of %s: %w", ns, err))
		}
		for i := range pods.Items {
			st.Pods = append(st.Pods, podRow(&pods.Items[i]))
		}
	}
	return st
}

func gatewayURLs(u lab.URLs, ip string) lab.URLs {
	if ip != "" {
		u.Gateway = fmt.Sprintf("http://%s:8080", ip)
		u.GatewayTLS = fmt.Sprintf("https://%s:8443", ip)
	}
	return u
}

// podRow is the pod as a row of kubectl get pods: READY counts the ready
// containers of the spec's, and STATUS is the phase unless a container says
// more (ImagePullBackOff, CrashLoopBackOff, Init:..., Terminating).
func podRow(p *corev1.Pod) PodRow {
	row := PodRow{Namespace: p.Namespace, Name: p.Name, IP: p.Status.PodIP, Node: p.Spec.NodeName,
		Containers: len(p.Spec.Containers), Status: string(p.Status.Phase)}
	if p.Status.Reason != "" {
		row.Status = p.Status.Reason
	}
	ready := 0
	for _, cs := range p.Status.ContainerStatuses {
		row.Restarts += cs.RestartCount
		if cs.Ready {
			ready++
		}
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			row.Status = cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
			row.Status = cs.State.Terminated.Reason
		}
	}
	for _, cs := range p.Status.InitContainerStatuses {
		row.Restarts += cs.RestartCount
		switch {
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			row.Status = "Init:" + cs.State.Waiting.Reason
		case cs.State.Terminated != nil:
			row.Status = "Init:" + cs.State.Terminated.Reason
		}
	}
	if row.Status == "" {
		row.Status = string(corev1.PodPending)
	}
	if p.DeletionTimestamp != nil {
		row.Status = "Terminating"
	}
	row.Ready = fmt.Sprintf("%d/%d", ready, row.Containers)
	return row
}

// Print writes the status as a person reads it.
func (st *Status) Print(w io.Writer) error {
	up := ""
	if !st.StartedAt.IsZero() {
		up = ", up " + time.Since(st.StartedAt).Round(time.Second).String()
	}
	fmt.Fprintf(w, "Lab: %s (runtime %s, cluster %s, context %s%s)\n", st.Phase, st.Runtime, st.Cluster, st.Context, up)
	if st.Error != "" {
		fmt.Fprintf(w, "error:         %s\n", st.Error)
	}
	if st.Pool != "" {
		fmt.Fprintf(w, "MetalLB pool:  %s\n", st.Pool)
	}
	fmt.Fprintf(w, "gateway:       %s/%s, external IP %s\n\n", GatewayNamespace, GatewayService, orNone(st.ExternalIP))
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tREADY\tSTATUS\tRESTARTS\tIP")
	for _, p := range st.Pods {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", p.Namespace, p.Name, p.Ready, p.Status, p.Restarts, orNone(p.IP))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	var urls []string
	for _, u := range []struct{ name, url string }{{"productpage:  ", st.URLs.ProductPage}, {"gateway:      ", st.URLs.Gateway}, {"gateway TLS:  ", st.URLs.GatewayTLS}} {
		if u.url != "" {
			urls = append(urls, u.name+" "+u.url)
		}
	}
	if len(urls) > 0 {
		fmt.Fprintln(w, strings.Join(urls, "\n"))
	}
	// The console is not published on a cluster: a forward reaches it.
	fmt.Fprintln(w, "kiali:         meshlab dashboard kiali")
	_, err := fmt.Fprintf(w, "kubectl:       kubectl --context %s get pods -A\n", st.Context)
	return err
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
