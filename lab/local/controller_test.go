package local

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlab/meshlab/lab"
)

func deploymentOf(replicas int32, surge, unavailable *intstr.IntOrString) *appsv1.Deployment {
	d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &replicas}}
	if surge != nil || unavailable != nil {
		d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: surge, MaxUnavailable: unavailable}
	}
	return d
}

// pods makes pods from a spec like "new:ready old:ready old:unready".
func podsOf(spec string) []*pod {
	var out []*pod
	start := time.Unix(1e9, 0)
	for i, f := range strings.Fields(spec) {
		tmpl, state, _ := strings.Cut(f, ":")
		out = append(out, &pod{Pod: lab.Pod{Name: fmt.Sprintf("p%d-%s", i, tmpl), TemplateHash: tmpl,
			Ready: state == "ready", CreatedAt: start.Add(time.Duration(i) * time.Second)}})
	}
	return out
}

func names(ps []*pod) []string {
	var n []string
	for _, p := range ps {
		n = append(n, p.Name)
	}
	return n
}

// TestPlanDeployment: the rolling update's arithmetic, as the Deployment
// controller has it (defaults 25% surge rounded up, 25% unavailable
// rounded down): never more than replicas+surge pods, never fewer than
// replicas-unavailable ready ones, unready old pods go first.
func TestPlanDeployment(t *testing.T) {
	two := intstr.FromInt32(2)
	zero := intstr.FromInt32(0)
	tests := []struct {
		name       string
		dep        *appsv1.Deployment
		pods       string
		wantCreate int
		wantRemove []string
	}{
		{"a new deployment starts all its replicas", deploymentOf(3, nil, nil), "", 3, nil},
		{"steady", deploymentOf(2, nil, nil), "new:ready new:ready", 0, nil},
		{"scale up at once", deploymentOf(3, nil, nil), "new:ready", 2, nil},
		{"scale down takes unready first, then newest", deploymentOf(1, nil, nil), "new:ready new:unready new:ready", 0, []string{"p1-new", "p2-new"}},
		{"restart of one replica: surge one, keep the old until the new is ready", deploymentOf(1, nil, nil), "old:ready", 1, nil},
		{"restart of one replica: new pod not ready yet", deploymentOf(1, nil, nil), "old:ready new:unready", 0, nil},
		{"restart of one replica: new pod ready, the old goes", deploymentOf(1, nil, nil), "old:ready new:ready", 0, []string{"p0-old"}},
		{"restart of two: one at a time (surge 1, unavailable 0)", deploymentOf(2, nil, nil), "old:ready old:ready", 1, nil},
		{"restart of two: first new ready, one old goes, next new", deploymentOf(2, nil, nil), "old:ready old:ready new:ready", 0, []string{"p1-old"}},
		{"restart of two: then the second", deploymentOf(2, nil, nil), "old:ready new:ready", 1, nil},
		{"an unready old pod goes at once", deploymentOf(2, nil, nil), "old:unready old:ready", 1, []string{"p0-old"}},
		{"four replicas: surge 1, unavailable 1", deploymentOf(4, nil, nil), "old:ready old:ready old:ready old:ready", 1, []string{"p3-old"}},
		{"maxSurge 2 maxUnavailable 0", deploymentOf(2, &two, &zero), "old:ready old:ready", 2, nil},
		{"both zero: one may be unavailable", deploymentOf(2, &zero, &zero), "old:ready old:ready", 0, []string{"p1-old"}},
		{"scale to zero", deploymentOf(0, nil, nil), "new:ready", 0, []string{"p0-new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := planDeployment(tt.dep, "new", podsOf(tt.pods))
			if pl.create != tt.wantCreate || !slices.Equal(names(pl.remove), tt.wantRemove) {
				t.Fatalf("plan = create %d, remove %v; want create %d, remove %v", pl.create, names(pl.remove), tt.wantCreate, tt.wantRemove)
			}
		})
	}
}

func TestPlanRecreate(t *testing.T) {
	d := deploymentOf(2, nil, nil)
	d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType
	if pl := planDeployment(d, "new", podsOf("old:ready old:ready")); pl.create != 0 || len(pl.remove) != 2 {
		t.Fatalf("recreate with old pods: %+v; want both removed first", pl)
	}
	if pl := planDeployment(d, "new", nil); pl.create != 2 {
		t.Fatalf("recreate once they are gone: %+v", pl)
	}
}

func TestResolveEnv(t *testing.T) {
	yes := true
	d := desired{
		configMaps: map[string]*corev1.ConfigMap{"foo/cfg": {Data: map[string]string{"MODE": "fast", "LEVEL": "3"}}},
		secrets:    map[string]*corev1.Secret{"foo/creds": {Data: map[string][]byte{"password": []byte("s3cret")}, StringData: map[string]string{"user": "ann"}}},
	}
	p := &pod{Pod: lab.Pod{Name: "web-1", Namespace: "foo", IP: "198.18.0.9", Labels: map[string]string{"app": "web"}}, serviceAccount: "web"}
	c := corev1.Container{
		EnvFrom: []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		Env: []corev1.EnvVar{
			{Name: "GREETING", Value: "mode $(CFG_MODE)"},
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
			{Name: "USER", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "user"}}},
			{Name: "OPT", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "x", Optional: &yes}}},
		},
	}
	env, err := resolveEnv(p, c, d)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CFG_LEVEL=3", "CFG_MODE=fast", "GREETING=mode fast", "POD=web-1", "IP=198.18.0.9", "APP=web", "PASSWORD=s3cret", "USER=ann"}
	if !slices.Equal(env, want) {
		t.Fatalf("env = %q\nwant  %q", env, want)
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: "MISSING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "absent"}}})
	if _, err := resolveEnv(p, c, d); err == nil || !strings.Contains(err.Error(), `env MISSING: key "absent" not found in configmap "cfg"`) {
		t.Fatalf("a missing key: %v", err)
	}
}
