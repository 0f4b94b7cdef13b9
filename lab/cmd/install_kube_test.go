package cmd

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/controlplane/ca"
	"github.com/meshlab/meshlab/controlplane/inject"
	"github.com/meshlab/meshlab/lab/kube/install"
	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// runInstall runs `meshlab install` and returns its progress.
func runInstall(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	var out, progress bytes.Buffer
	app := &cli.App{Writer: &out, ErrWriter: &progress, Commands: []*cli.Command{Install()}, ExitErrHandler: func(*cli.Context, error) {}}
	if err := app.RunContext(ctx, append([]string{"meshlab", "install"}, args...)); err != nil {
		t.Fatalf("install %q: %v\n%s", args, err, progress.String())
	}
	return progress.String()
}

// TestInstallThenInject is the chain a cluster runs, against a real API
// server: `meshlab install` makes the mesh CA (the cacerts Secret) and
// registers the webhooks with its root; the control plane signs its webhook
// certificate with that CA, read from the Secret's files as istiod mounts
// them; the API server, trusting only the caBundle installed, calls the
// injector over TLS, and a pod created in the bookinfo namespace comes back
// with its sidecar. A re-install keeps the CA.
func TestInstallThenInject(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kc := kubernetes.NewForConfigOrDie(env.Config)
	const image = "meshlab.local/meshlab:test"
	common := []string{"--kubeconfig", env.Kubeconfig, "--image", image, "--bookinfo-namespace", "bookinfo", "--no-wait", "--timeout", "1m"}

	// First install, as in a cluster: the webhooks go to the istiod Service.
	progress := runInstall(ctx, t, common...)
	if !strings.Contains(progress, "making a new mesh root") {
		t.Errorf("first install did not make a root:\n%s", progress)
	}
	secret, err := kc.CoreV1().Secrets(install.Namespace).Get(ctx, install.CACertsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the install made no cacerts Secret: %v", err)
	}
	root := secret.Data[ca.RootCertFile]

	// The Secret's files, as the kubelet writes them into istiod's volume.
	caDir := t.TempDir()
	for name, b := range secret.Data {
		if err := os.WriteFile(filepath.Join(caDir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := controlplane.New(controlplane.Options{
		StateDir: t.TempDir(), XDSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", WebhookAddr: "127.0.0.1:0",
		Kube: env.Config, CADir: caDir, Inject: inject.Params{Image: image},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
		srv.Close()
	})
	if !bytes.Equal(srv.CA().RootPEM(), root) {
		t.Fatal("the control plane did not load the CA of the cacerts files")
	}
	addr := srv.WebhookAddr(ctx)
	if addr == nil {
		t.Fatal("the webhooks never listened")
	}

	// Again, now with the webhooks by URL at this control plane: the root
	// is kept, not rotated.
	progress = runInstall(ctx, t, append(common, "--webhook-url-base", "https://"+addr.String())...)
	if !strings.Contains(progress, "keeping the mesh CA of Secret istio-system/cacerts") {
		t.Errorf("re-install did not keep the CA:\n%s", progress)
	}
	again, err := kc.CoreV1().Secrets(install.Namespace).Get(ctx, install.CACertsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range secret.Data {
		if !bytes.Equal(again.Data[name], b) {
			t.Errorf("re-install changed %s of the cacerts Secret", name)
		}
	}
	mw, err := kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.InjectorWebhook, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vw, err := kc.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, install.ValidatorWebhook, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(mw.Webhooks) != 2 {
		t.Errorf("injector has %d webhooks, want namespace.* and object.*", len(mw.Webhooks))
	}
	for _, cc := range []struct {
		name   string
		bundle []byte
	}{{mw.Webhooks[0].Name, mw.Webhooks[0].ClientConfig.CABundle}, {mw.Webhooks[len(mw.Webhooks)-1].Name, mw.Webhooks[len(mw.Webhooks)-1].ClientConfig.CABundle},
		{vw.Webhooks[0].Name, vw.Webhooks[0].ClientConfig.CABundle}} {
		if !bytes.Equal(cc.bundle, root) {
			t.Errorf("webhook %s: caBundle is not the cacerts root", cc.name)
		}
	}

	select {
	case <-srv.KubeSynced():
	case <-ctx.Done():
		t.Fatal("the control plane never synced with the API server")
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ns string
		labels   map[string]string
		want     bool
	}{
		{"ratings", "bookinfo", map[string]string{"app": "ratings"}, true},
		{"opted-out", "bookinfo", map[string]string{"app": "x", install.InjectPodLabel: "false"}, false},
		{"opted-in", "plain", map[string]string{"app": "y", install.InjectPodLabel: "true"}, true},
		{"unlabelled", "plain", map[string]string{"app": "z"}, false},
	}
	for i, tt := range tests {
		t.Run(tt.ns+"/"+tt.name, func(t *testing.T) {
			var got *corev1.Pod
			// The API server takes a moment to see the new webhook URL;
			// until then the injector (failurePolicy Fail) is unreachable
			// and the create is refused.
			deadline := time.Now().Add(time.Minute)
			for {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", tt.name, i), Namespace: tt.ns, Labels: tt.labels},
					// serviceAccountName as the ServiceAccount admission
					// plugin (off in the test apiserver) would set it: the
					// injected istio-token volume needs one.
					Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: image}}},
				}
				got, err = kc.CoreV1().Pods(tt.ns).Create(ctx, pod, metav1.CreateOptions{})
				if err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("create pod: %v", err)
			}
			if injected := inject.Injected(got.Annotations, &got.Spec); injected != tt.want {
				var names []string
				for _, c := range got.Spec.Containers {
					names = append(names, c.Name)
				}
				t.Errorf("pod %s/%s: injected=%v (containers %v), want %v", tt.ns, got.Name, injected, names, tt.want)
			}
		})
	}
}
