package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/meshlab/meshlab/lab"
)

// PortForward forwards Address:LocalPort on this machine to the Service's
// port on one of its ready pods, as `kubectl port-forward svc/NAME` does
// (the pods/portforward subresource, over WebSocket with SPDY as the
// fallback). It returns once the local port listens; the forward holds
// until ctx ends.
func (r *Runtime) PortForward(ctx context.Context, o lab.PortForwardOptions) (lab.Forward, error) {
	c, err := r.clients()
	if err != nil {
		return lab.Forward{}, err
	}
	pod, podPort, err := servicePod(ctx, c.kube, o.Namespace, o.Service, o.Port)
	if err != nil {
		return lab.Forward{}, fmt.Errorf("port-forward: %w", err)
	}
	addr := o.Address
	if addr == "" {
		addr = "127.0.0.1"
	}
	local := o.LocalPort
	if local == 0 {
		local = o.Port
	}
	return forwardPod(ctx, c, pod, addr, local, podPort)
}

// forwardPod forwards addr:local (0: any free port) on this machine to
// podPort of pod, and returns once it listens; the forward holds until ctx
// ends or the connection to the pod breaks.
func forwardPod(ctx context.Context, c *clients, pod *corev1.Pod, addr string, local, podPort int) (lab.Forward, error) {
	req := c.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward")
	transport, upgrader, err := spdy.RoundTripperFor(c.cfg)
	if err != nil {
		return lab.Forward{}, fmt.Errorf("port-forward to pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	spdyDialer := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, req.URL())
	wsDialer, err := portforward.NewSPDYOverWebsocketDialerForStreaming(req.URL(), c.cfg)
	if err != nil {
		return lab.Forward{}, fmt.Errorf("port-forward to pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	dialer := portforward.NewFallbackDialerForStreaming(wsDialer, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddressesForStreamingWithContext(ctx, dialer, []string{addr},
		[]string{fmt.Sprintf("%d:%d", local, podPort)}, ready, io.Discard, io.Discard)
	if err != nil {
		cancel()
		return lab.Forward{}, fmt.Errorf("port-forward %s:%d to pod %s/%s: %w", addr, local, pod.Namespace, pod.Name, err)
	}
	// The forward's goroutine is the Forward's: it ends with ctx (the
	// caller's) or when the connection to the pod breaks.
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("the forward ended before it listened")
		}
		return lab.Forward{}, fmt.Errorf("port-forward %s:%d to pod %s/%s port %d: %w", addr, local, pod.Namespace, pod.Name, podPort, err)
	case <-ctx.Done():
		cancel()
		if err := <-done; err != nil {
			return lab.Forward{}, fmt.Errorf("port-forward to pod %s/%s: %w (%w)", pod.Namespace, pod.Name, ctx.Err(), err)
		}
		return lab.Forward{}, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err == nil && len(ports) == 1 {
		local = int(ports[0].Local)
	}
	wait := func() error {
		defer cancel()
		err := <-done
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("the connection to the pod was closed")
		}
		return fmt.Errorf("port-forward to pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return lab.Forward{URL: "http://" + net.JoinHostPort(addr, strconv.Itoa(local)) + "/", Wait: wait}, nil
}

// servicePod picks the pod a forward to a Service's port goes to, as
// kubectl does: a running, ready pod its selector selects (the oldest
// ready, for a stable choice), and the container port the Service's
// targetPort names.
func servicePod(ctx context.Context, kc kubernetes.Interface, ns, name string, port int) (*corev1.Pod, int, error) {
	svc, err := kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, 0, fmt.Errorf("service %s/%s not found (is the lab installed? `meshlab status`)", ns, name)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get service %s/%s: %w", ns, name, err)
	}
	var sp *corev1.ServicePort
	var have []string
	for i, p := range svc.Spec.Ports {
		have = append(have, strconv.Itoa(int(p.Port)))
		if int(p.Port) == port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return nil, 0, fmt.Errorf("service %s/%s has no port %d (it has %v)", ns, name, port, have)
	}
	if len(svc.Spec.Selector) == 0 {
		return nil, 0, fmt.Errorf("service %s/%s has no selector: no pod to forward to", ns, name)
	}
	pods, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return nil, 0, fmt.Errorf("list the pods of service %s/%s: %w", ns, name, err)
	}
	var ready []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(*p) {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return nil, 0, fmt.Errorf("service %s/%s has no running, ready pod (%d selected; see `meshlab get pods -n %s`)", ns, name, len(pods.Items), ns)
	}
	sort.Slice(ready, func(i, j int) bool {
		a, b := readySince(ready[i]), readySince(ready[j])
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return ready[i].Name < ready[j].Name
	})
	pod := ready[0]
	target, err := containerPort(pod, sp.TargetPort, int(sp.Port))
	if err != nil {
		return nil, 0, fmt.Errorf("service %s/%s port %d: %w", ns, name, port, err)
	}
	return pod, target, nil
}

// containerPort resolves a Service's targetPort on a pod: a number as is
// (none means the Service's port), a name by the pod's container ports.
func containerPort(p *corev1.Pod, target intstr.IntOrString, servicePort int) (int, error) {
	switch {
	case target.Type == intstr.Int && target.IntVal == 0:
		return servicePort, nil
	case target.Type == intstr.Int:
		return int(target.IntVal), nil
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == target.StrVal {
				return int(cp.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("targetPort %q names no container port of pod %s/%s", target.StrVal, p.Namespace, p.Name)
}
