package local

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/lab"
)

// deployment is a Deployment of one pod with an app container and a
// helper, with podSC and the containers' securityContext YAML spliced in.
func deployment(podSC, appSC, helperSC string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: default}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      securityContext: {` + podSC + `}
      containers:
      - name: app
        image: meshlab.local/meshlab:test
        command: ["/meshlab", "sample", "serve"]
        securityContext: {` + appSC + `}
      - name: helper
        image: meshlab.local/meshlab:test
        command: ["/meshlab", "sample", "serve"]
        securityContext: {` + helperSC + `}
`
}

func TestAppIdentity(t *testing.T) {
	const def = AppUIDBase + 3
	tests := []struct {
		name                   string
		podSC, appSC, helperSC string
		want                   []identity // app, helper
		wantErr                string
	}{
		{"nothing said: the pod's uid of the lab, and a group of the same number", "", "", "",
			[]identity{{def, def}, {def, def}}, ""},
		{"pod level", "runAsUser: 1000, runAsGroup: 3000", "", "",
			[]identity{{1000, 3000}, {1000, 3000}}, ""},
		{"container over pod", "runAsUser: 1000, runAsGroup: 3000", "runAsUser: 2000", "runAsGroup: 4000",
			[]identity{{2000, 3000}, {1000, 4000}}, ""},
		{"uid without group: the group of the same number, not root's", "", "runAsUser: 1000", "",
			[]identity{{1000, 1000}, {def, def}}, ""},
		{"a pod's root overridden by every container", "runAsUser: 0", "runAsUser: 1000", "runAsUser: 1001",
			[]identity{{1000, 1000}, {1001, 1001}}, ""},
		{"root", "", "runAsUser: 0", "", nil,
			"spec.template.spec.containers[0].securityContext.runAsUser: Invalid value: 0: the local runtime never runs an app container as root"},
		{"root at pod level", "runAsUser: 0", "", "", nil,
			"spec.template.spec.securityContext.runAsUser: Invalid value: 0"},
		{"root's group", "", "", "runAsUser: 1000, runAsGroup: 0", nil,
			"spec.template.spec.containers[1].securityContext.runAsGroup: Invalid value: 0"},
		{"the proxy's uid", "", "runAsUser: 1337", "", nil,
			"runAsUser: Invalid value: 1337: 1337 is istio-proxy's uid, whose traffic the sidecar does not capture"},
		{"the proxy's gid", "runAsGroup: 1337", "", "", nil,
			"spec.template.spec.securityContext.runAsGroup: Invalid value: 1337: 1337 is istio-proxy's gid"},
		{"privileged", "", "privileged: true", "", nil,
			"spec.template.spec.containers[0].securityContext.privileged: Forbidden: the local runtime runs no container privileged"},
		{"added capabilities", "", "", "capabilities: {add: [NET_ADMIN]}", nil,
			`spec.template.spec.containers[1].securityContext.capabilities.add: Invalid value: ["NET_ADMIN"]: the local runtime runs app containers without capabilities`},
		{"dropped capabilities are fine", "", "capabilities: {drop: [ALL]}, allowPrivilegeEscalation: false, runAsNonRoot: true", "",
			[]identity{{def, def}, {def, def}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := config.Split([]byte(deployment(tt.podSC, tt.appSC, tt.helperSC)))
			if err != nil || len(docs) != 1 {
				t.Fatalf("split the manifest: %d documents, %v", len(docs), err)
			}
			var dep appsv1.Deployment
			if err := json.Unmarshal(docs[0].JSON, &dep); err != nil {
				t.Fatal(err)
			}
			err = checkRunnable([]lab.Document{{Source: "my-app.yaml", JSON: docs[0].JSON}}, "default")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "my-app.yaml: document 1 (Deployment default/app): ") {
					t.Fatalf("checkRunnable = %v; want an error naming the file, the deployment and %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("checkRunnable = %v", err)
			}
			var got []identity
			for i := range dep.Spec.Template.Spec.Containers {
				id, err := appIdentity(dep.Spec.Template.Spec, i, def)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, id)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("identities = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestContainerEnvIsTheContainers(t *testing.T) {
	t.Setenv("http_proxy", "http://proxy.example:3128")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "daemon's")
	p := &pod{serviceAccount: "bookinfo-ratings"}
	p.Namespace, p.Name, p.IP = "default", "ratings-v1-1-x", "198.18.0.9"
	got := containerEnv(p, identity{AppUIDBase, AppUIDBase}, []string{"LOG_LEVEL=debug"})
	want := []string{"PATH=" + containerPath, "HOSTNAME=ratings-v1-1-x", "HOME=/", "POD_NAME=ratings-v1-1-x",
		"POD_NAMESPACE=default", "INSTANCE_IP=198.18.0.9", "SERVICE_ACCOUNT=bookinfo-ratings", "LOG_LEVEL=debug"}
	if !slices.Equal(got, want) {
		t.Errorf("containerEnv = %q\nwant %q", got, want)
	}
}
