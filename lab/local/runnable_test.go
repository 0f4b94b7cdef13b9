package local

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

var updateRunnable = flag.Bool("update-runnable", false, "rewrite the .want files of the local runtime's fixtures")

// kubeFixtures is where the Kubernetes manifests of the config package's
// tests live: valid Kubernetes all, some of them beyond the local runtime.
const kubeFixtures = "../../controlplane/config/testdata/kube"

var templateSpec = field.NewPath("spec", "template", "spec")

// objectsOf are the objects of kind in a YAML stream, decoded strictly
// into new()'s type.
func objectsOf[T any](t *testing.T, file, kind string) []*T {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*T
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatal(err)
		}
		if tm.Kind != kind {
			continue
		}
		obj := new(T)
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatal(err)
		}
		out = append(out, obj)
	}
}

func fixtureDeployments(t *testing.T, file string) []*appsv1.Deployment {
	t.Helper()
	return objectsOf[appsv1.Deployment](t, file, "Deployment")
}

func errorLines(errs field.ErrorList) string {
	var lines []string
	for _, e := range errs {
		lines = append(lines, e.Error())
	}
	return strings.Join(lines, "\n")
}

// TestCheckRunnableFixtures: each manifest of testdata/kube/local asks for
// one thing the local runtime does not do and gets the error in the .want
// beside it; every manifest of testdata/kube/good runs.
func TestCheckRunnableFixtures(t *testing.T) {
	bad, _ := filepath.Glob(kubeFixtures + "/local/*.yaml")
	good, _ := filepath.Glob(kubeFixtures + "/good/*.yaml")
	if len(bad) < 20 || len(good) < 4 {
		t.Fatalf("found %d local and %d good manifests; the fixtures are missing", len(bad), len(good))
	}
	for _, f := range bad {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			ds := fixtureDeployments(t, f)
			if len(ds) != 1 {
				t.Fatalf("%d Deployments; want 1", len(ds))
			}
			got := errorLines(CheckRunnable(&ds[0].Spec.Template.Spec, templateSpec))
			wantFile := strings.TrimSuffix(f, ".yaml") + ".want"
			if *updateRunnable {
				if err := os.WriteFile(wantFile, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatal(err)
			}
			if got == "" || got != strings.TrimSuffix(string(want), "\n") {
				t.Errorf("CheckRunnable:\n%s\nwant (%s):\n%s", got, wantFile, want)
			}
		})
	}
	for _, f := range good {
		t.Run(filepath.Base(f), func(t *testing.T) {
			for _, d := range fixtureDeployments(t, f) {
				if errs := CheckRunnable(&d.Spec.Template.Spec, templateSpec); len(errs) > 0 {
					t.Errorf("deployment %s: %s", d.Name, errorLines(errs))
				}
			}
			for _, s := range objectsOf[corev1.Service](t, f, "Service") {
				if errs := CheckServiceRunnable(&s.Spec, field.NewPath("spec")); len(errs) > 0 {
					t.Errorf("service %s: %s", s.Name, errorLines(errs))
				}
			}
		})
	}
}

// TestCheckRunnableHostCommand: what a host command must be on this
// machine, said for each way it can fail.
func TestCheckRunnableHostCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		// WriteFile's mode passes through the umask; say it exactly.
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tool := write("tool", 0o755)
	ownerOnly := write("owner-only", 0o700)
	notExec := write("data", 0o644)
	tests := []struct {
		name    string
		command []string
		want    string
	}{
		{"an executable file", []string{tool, "--serve"}, ""},
		{"executable by its owner only", []string{ownerOnly},
			`spec.template.spec.containers[0].command[0]: Invalid value: "` + ownerOnly + `": is not executable by others (mode 0700) and a pod runs as a uid of its own; make it so (chmod o+rx) or name another`},
		{"not executable", []string{notExec},
			`spec.template.spec.containers[0].command[0]: Invalid value: "` + notExec + `": is not executable by others (mode 0644) and a pod runs as a uid of its own; make it so (chmod o+rx) or name another`},
		{"a directory", []string{dir},
			`spec.template.spec.containers[0].command[0]: Invalid value: "` + dir + `": is not a file on this machine; name an executable file`},
		{"missing", []string{filepath.Join(dir, "nope")},
			`spec.template.spec.containers[0].command[0]: Invalid value: "` + filepath.Join(dir, "nope") + `": no such file on this machine; the local runtime runs host commands from this machine's file system and pulls no image`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/tool:1", Command: tt.command}}}
			if got := errorLines(CheckRunnable(spec, templateSpec)); got != tt.want {
				t.Errorf("CheckRunnable:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestCheckRunnableContainers: the ways a container names this binary's
// modes, and one error per bad field when several containers are wrong.
func TestCheckRunnableContainers(t *testing.T) {
	const img = "meshlab.local/meshlab:v1.2.3"
	tests := []struct {
		name       string
		containers []corev1.Container
		want       []string
	}{
		{"args name the mode", []corev1.Container{{Name: "a", Image: img, Args: []string{"sample", "httpbin"}}}, nil},
		{"command names the binary", []corev1.Container{{Name: "a", Image: img, Command: []string{"/meshlab", "sample"}, Args: []string{"httpbin"}}}, nil},
		{"meshlab on PATH", []corev1.Container{{Name: "a", Image: img, Command: []string{"meshlab", "sample", "httpbin"}}}, nil},
		{"by digest", []corev1.Container{{Name: "a", Image: "meshlab.local/meshlab@sha256:" + strings.Repeat("0", 64), Args: []string{"version"}}}, nil},
		{"untagged", []corev1.Container{{Name: "a", Image: "meshlab.local/meshlab", Args: []string{"version"}}}, nil},
		{"a lookalike image", []corev1.Container{{Name: "a", Image: "meshlab.local/meshlab-extra:v1", Args: []string{"version"}}},
			[]string{`spec.template.spec.containers[0].image: Invalid value: "meshlab.local/meshlab-extra:v1": ` + imageHint}},
		{"a registry with a port", []corev1.Container{{Name: "a", Image: "localhost:5000/meshlab.local/meshlab:v1", Args: []string{"version"}}},
			[]string{`spec.template.spec.containers[0].image: Invalid value: "localhost:5000/meshlab.local/meshlab:v1": ` + imageHint}},
		{"a flag is no mode", []corev1.Container{{Name: "a", Image: img, Args: []string{"--help"}}},
			[]string{`spec.template.spec.containers[0].args[0]: Invalid value: "--help": names no mode of /meshlab; begin args with the mode, e.g. args: [sample, httpbin]`}},
		{"restart rules", []corev1.Container{{Name: "a", Image: img, Args: []string{"version"},
			RestartPolicy:      new(corev1.ContainerRestartPolicyAlways),
			RestartPolicyRules: []corev1.ContainerRestartRule{{Action: corev1.ContainerRestartRuleActionRestart}}}},
			[]string{`spec.template.spec.containers[0].restartPolicyRules: Forbidden: the local runtime restarts every container that exits, whatever its exit code; remove the rules`}},
		{"each bad container said", []corev1.Container{
			{Name: "a", Image: "nginx:1.27"},
			{Name: "b", Image: img, Args: []string{"sample", "httpbin"}},
			{Name: "c", Image: "redis", Command: []string{"redis-server"}},
		}, []string{
			`spec.template.spec.containers[0].image: Invalid value: "nginx:1.27": the local runtime runs this binary's modes (image meshlab.local/meshlab, args …) or a host command given by absolute path in ` + "`command`" + `; use --runtime kind for other images`,
			`spec.template.spec.containers[2].command[0]: Invalid value: "redis-server": the local runtime runs a host command only when named by absolute path (it has no image to look redis-server up in); write its path on this machine, or use --runtime kind`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &corev1.PodSpec{Containers: tt.containers}
			var got []string
			for _, e := range CheckRunnable(spec, templateSpec) {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("CheckRunnable:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
	t.Run("pod-level root named once", func(t *testing.T) {
		spec := &corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: new(int64(0))},
			Containers:      []corev1.Container{{Name: "a", Image: img, Args: []string{"version"}}, {Name: "b", Image: img, Args: []string{"version"}}},
		}
		want := `spec.template.spec.securityContext.runAsUser: Invalid value: 0: the local runtime never runs an app container as root (its processes share the host's file system); remove the field or give another uid`
		if got := errorLines(CheckRunnable(spec, templateSpec)); got != want {
			t.Errorf("CheckRunnable:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestArgv(t *testing.T) {
	tests := []struct {
		c    corev1.Container
		want []string
	}{
		{corev1.Container{Image: "meshlab.local/meshlab:dev", Args: []string{"sample", "httpbin"}}, []string{"/meshlab", "sample", "httpbin"}},
		{corev1.Container{Image: "meshlab.local/meshlab:dev", Command: []string{"/meshlab", "sample"}, Args: []string{"httpbin"}}, []string{"/meshlab", "sample", "httpbin"}},
		{corev1.Container{Image: "curlimages/curl", Command: []string{"/bin/sleep", "infinity"}}, []string{"/bin/sleep", "infinity"}},
	}
	for _, tt := range tests {
		if got := Argv(&tt.c); !slices.Equal(got, tt.want) {
			t.Errorf("Argv(%v) = %q; want %q", tt.c, got, tt.want)
		}
	}
}

// TestAppIdentityRefusesPrivileges: a spec that did not pass CheckRunnable
// still cannot start a container with privileges.
func TestAppIdentityRefusesPrivileges(t *testing.T) {
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "a", SecurityContext: &corev1.SecurityContext{RunAsUser: new(int64(0))}}}}
	_, err := appIdentity(spec, 0, AppUIDBase)
	if err == nil || !strings.Contains(err.Error(), "spec.template.spec.containers[0].securityContext.runAsUser: Invalid value: 0: the local runtime never runs an app container as root") {
		t.Errorf("appIdentity = %v; want the root refusal", err)
	}
}

func TestCheckServiceRunnable(t *testing.T) {
	spec := field.NewPath("spec")
	tests := []struct {
		name string
		spec corev1.ServiceSpec
		want string
	}{
		{"ClusterIP", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}, ""},
		{"headless", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "None"}, ""},
		{"NodePort, UDP", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 30053}}}, ""},
		{"LoadBalancer", corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
			`spec.type: Invalid value: "LoadBalancer": the local runtime has no load balancer; use type NodePort, which it publishes at 127.0.0.1:nodePort, or --runtime kind`},
		{"ExternalName", corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"},
			`spec.type: Invalid value: "ExternalName": the local runtime has no ExternalName Services; give the mesh the outside host with a ServiceEntry`},
		{"a clusterIP of the user's", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10"},
			`spec.clusterIP: Invalid value: "10.96.0.10": the local runtime gives every Service a VIP of its own range; remove clusterIP (or write None for a headless Service)`},
		{"externalIPs", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ExternalIPs: []string{"192.0.2.1"}},
			`spec.externalIPs: Forbidden: the local runtime publishes Services on the host through NodePort only; use type NodePort`},
		{"SCTP", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}, {Port: 9, Protocol: corev1.ProtocolSCTP}}},
			`spec.ports[1].protocol: Invalid value: "SCTP": the local runtime serves TCP and UDP ports only`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorLines(CheckServiceRunnable(&tt.spec, spec)); got != tt.want {
				t.Errorf("CheckServiceRunnable:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
