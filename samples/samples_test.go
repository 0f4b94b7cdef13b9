package samples

import (
	"encoding/json"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// docs splits a multi-document YAML file, dropping empty and comment-only parts.
func docs(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, d := range docSep.Split(string(b), -1) {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatalf("parse YAML document: %v\n%s", err, d)
		}
		if len(m) > 0 {
			out = append(out, []byte(d))
		}
	}
	return out
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// portWant is one Service port; target 0 means no targetPort (the same as port).
type portWant struct {
	name         string
	port, target int32
}

type serviceWant struct {
	name  string
	ports []portWant
}

// deploymentWant is what a Deployment of a sample must say. Its command is
// the container's command and args joined by spaces; probe is "http /path
// PORT", "tcp PORT" or "" for none; version "" means no version label.
type deploymentWant struct {
	name, app, version, account, container, command string
	ports                                           []int32
	probe, serviceVersion                           string
}

type manifestWant struct {
	services    []serviceWant
	accounts    []string
	deployments []deploymentWant
}

func bookinfoWant() manifestWant {
	var m manifestWant
	for _, svc := range []struct {
		name     string
		versions []string
	}{{"details", []string{"v1"}}, {"ratings", []string{"v1"}}, {"reviews", []string{"v1", "v2", "v3"}}, {"productpage", []string{"v1"}}} {
		m.services = append(m.services, serviceWant{svc.name, []portWant{{"http", 9080, 0}}})
		m.accounts = append(m.accounts, "bookinfo-"+svc.name)
		for _, v := range svc.versions {
			m.deployments = append(m.deployments, deploymentWant{svc.name + "-" + v, svc.name, v, "bookinfo-" + svc.name, svc.name,
				"/meshlab sample bookinfo " + svc.name, []int32{9080}, "http /health 9080", v})
		}
	}
	return m
}

func clientWant(name string) manifestWant {
	return manifestWant{
		services:    []serviceWant{{name, []portWant{{"http", 80, 0}}}},
		accounts:    []string{name},
		deployments: []deploymentWant{{name, name, "", name, name, "/meshlab sample " + name, nil, "", ""}},
	}
}

func tcpEchoWant(deployments ...deploymentWant) manifestWant {
	return manifestWant{
		services:    []serviceWant{{"tcp-echo", []portWant{{"tcp", 9000, 0}, {"tcp-other", 9001, 0}}}},
		deployments: deployments,
	}
}

func tcpEchoDeployment(name, version, prefix string) deploymentWant {
	return deploymentWant{name, "tcp-echo", version, "", "tcp-echo", "/meshlab sample tcp-echo 9000,9001,9002 " + prefix,
		[]int32{9000, 9001}, "tcp 9000", ""}
}

func helloworldDeployment(v string) deploymentWant {
	return deploymentWant{"helloworld-" + v, "helloworld", v, "", "helloworld", "/meshlab sample helloworld",
		[]int32{5000}, "http /health 5000", v}
}

// TestWorkloadManifests decodes every sample manifest strictly into
// Kubernetes' types and checks the names, labels, ports, accounts and
// commands that Istio's tasks rely on.
func TestWorkloadManifests(t *testing.T) {
	tests := []struct {
		name     string
		manifest []byte
		want     manifestWant
	}{
		{"bookinfo", BookinfoManifest(), bookinfoWant()},
		{"httpbin", HTTPBinManifest(), manifestWant{
			services: []serviceWant{{"httpbin", []portWant{{"http", 8000, 8080}}}},
			accounts: []string{"httpbin"},
			deployments: []deploymentWant{{"httpbin", "httpbin", "v1", "httpbin", "httpbin", "/meshlab sample httpbin --addr :8080",
				[]int32{8080}, "http /health 8080", ""}},
		}},
		{"sleep", SleepManifest(), clientWant("sleep")},
		{"curl", CurlManifest(), clientWant("curl")},
		{"helloworld", HelloworldManifest(), manifestWant{
			services:    []serviceWant{{"helloworld", []portWant{{"http", 5000, 0}}}},
			deployments: []deploymentWant{helloworldDeployment("v1"), helloworldDeployment("v2")},
		}},
		{"tcp-echo", TCPEchoManifest(), tcpEchoWant(tcpEchoDeployment("tcp-echo", "v1", "hello"))},
		{"ext-authz", ExtAuthzManifest(), manifestWant{
			services:    []serviceWant{{"ext-authz", []portWant{{"http", 8000, 8000}, {"grpc", 9000, 9000}}}},
			deployments: []deploymentWant{{"ext-authz", "ext-authz", "", "", "ext-authz", "/meshlab sample ext-authz", []int32{8000, 9000}, "", ""}},
		}},
		{"tcp-echo-services", TCPEchoServicesManifest(), tcpEchoWant(
			tcpEchoDeployment("tcp-echo-v1", "v1", "one"), tcpEchoDeployment("tcp-echo-v2", "v2", "two"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			services := map[string]corev1.Service{}
			accounts := map[string]corev1.ServiceAccount{}
			deployments := map[string]appsv1.Deployment{}
			for _, d := range docs(t, tt.manifest) {
				var tm typeMeta
				if err := yaml.Unmarshal(d, &tm); err != nil {
					t.Fatal(err)
				}
				want := map[string]string{"Service": "v1", "ServiceAccount": "v1", "Deployment": "apps/v1"}[tm.Kind]
				if tm.APIVersion != want {
					t.Errorf("%s apiVersion %q, want %q", tm.Kind, tm.APIVersion, want)
				}
				switch tm.Kind {
				case "Service":
					var s corev1.Service
					strict(t, d, &s)
					services[s.Name] = s
				case "ServiceAccount":
					var s corev1.ServiceAccount
					strict(t, d, &s)
					accounts[s.Name] = s
				case "Deployment":
					var s appsv1.Deployment
					strict(t, d, &s)
					deployments[s.Name] = s
				default:
					t.Errorf("unexpected kind %q", tm.Kind)
				}
			}
			if len(services) != len(tt.want.services) || len(accounts) != len(tt.want.accounts) || len(deployments) != len(tt.want.deployments) {
				t.Errorf("%d Services, %d ServiceAccounts, %d Deployments; want %d, %d, %d", len(services), len(accounts), len(deployments),
					len(tt.want.services), len(tt.want.accounts), len(tt.want.deployments))
			}
			for _, w := range tt.want.services {
				checkService(t, services, w)
			}
			for _, a := range tt.want.accounts {
				if _, ok := accounts[a]; !ok {
					t.Errorf("no ServiceAccount %s", a)
				}
			}
			for _, w := range tt.want.deployments {
				d, ok := deployments[w.name]
				if !ok {
					t.Errorf("no Deployment %s", w.name)
					continue
				}
				checkDeployment(t, d, w)
				// Every pod is selected by a Service of the file, as in Istio's samples.
				if !slices.ContainsFunc(tt.want.services, func(s serviceWant) bool { return s.name == w.app }) {
					t.Errorf("Deployment %s: no Service %s selects its pods", w.name, w.app)
				}
			}
		})
	}
}

func strict(t *testing.T, doc []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, doc)
	}
}

func checkService(t *testing.T, services map[string]corev1.Service, w serviceWant) {
	t.Helper()
	s, ok := services[w.name]
	if !ok {
		t.Errorf("no Service %s", w.name)
		return
	}
	if s.Labels["app"] != w.name || s.Labels["service"] != w.name {
		t.Errorf("Service %s labels = %v", w.name, s.Labels)
	}
	if len(s.Spec.Selector) != 1 || s.Spec.Selector["app"] != w.name {
		t.Errorf("Service %s selector = %v, want app=%s", w.name, s.Spec.Selector, w.name)
	}
	var got []portWant
	for _, p := range s.Spec.Ports {
		got = append(got, portWant{p.Name, p.Port, int32(p.TargetPort.IntValue())})
	}
	if !slices.Equal(got, w.ports) {
		t.Errorf("Service %s ports = %v, want %v", w.name, got, w.ports)
	}
}

func checkDeployment(t *testing.T, d appsv1.Deployment, w deploymentWant) {
	t.Helper()
	labels := map[string]string{"app": w.app}
	if w.version != "" {
		labels["version"] = w.version
	}
	for name, got := range map[string]map[string]string{
		"selector": d.Spec.Selector.MatchLabels, "template labels": d.Spec.Template.Labels,
	} {
		if !maps.Equal(got, labels) {
			t.Errorf("Deployment %s %s = %v, want %v", d.Name, name, got, labels)
		}
	}
	// Istio's client samples leave the Deployment itself unlabelled.
	if d.Labels != nil && !maps.Equal(d.Labels, labels) {
		t.Errorf("Deployment %s labels = %v, want %v", d.Name, d.Labels, labels)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("Deployment %s replicas = %v, want 1", d.Name, d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != w.account {
		t.Errorf("Deployment %s serviceAccountName = %q, want %q", d.Name, pod.ServiceAccountName, w.account)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("Deployment %s has %d containers, want 1", d.Name, len(pod.Containers))
	}
	c := pod.Containers[0]
	argv := slices.Concat(c.Command, c.Args)
	if c.Name != w.container || c.Image != "meshlab.local/meshlab:dev" || strings.Join(argv, " ") != w.command {
		t.Errorf("Deployment %s container = %s %s %q, want %s meshlab.local/meshlab:dev %q", d.Name, c.Name, c.Image, argv, w.container, w.command)
	}
	checkMode(t, d.Name, argv)
	var ports []int32
	for _, p := range c.Ports {
		ports = append(ports, p.ContainerPort)
	}
	if !slices.Equal(ports, w.ports) {
		t.Errorf("Deployment %s container ports = %v, want %v", d.Name, ports, w.ports)
	}
	var probe string
	switch p := c.ReadinessProbe; {
	case p == nil:
	case p.HTTPGet != nil:
		probe = "http " + p.HTTPGet.Path + " " + p.HTTPGet.Port.String()
	case p.TCPSocket != nil:
		probe = "tcp " + p.TCPSocket.Port.String()
	default:
		probe = "other"
	}
	if probe != w.probe {
		t.Errorf("Deployment %s readinessProbe = %q, want %q", d.Name, probe, w.probe)
	}
	var version string
	for _, e := range c.Env {
		if e.Name == "SERVICE_VERSION" {
			version = e.Value
		}
	}
	if version != w.serviceVersion {
		t.Errorf("Deployment %s SERVICE_VERSION = %q, want %q", d.Name, version, w.serviceVersion)
	}
}

// checkMode: argv names a mode (or its alias) of this binary's `sample`
// command, so a renamed mode cannot leave a manifest behind.
func checkMode(t *testing.T, deployment string, argv []string) {
	t.Helper()
	if len(argv) < 3 || argv[0] != "/meshlab" || argv[1] != "sample" {
		t.Errorf("Deployment %s command %q is not a meshlab sample mode", deployment, argv)
		return
	}
	var found bool
	for _, c := range Command().Subcommands {
		if c.HasName(argv[2]) {
			found = true
		}
	}
	if !found {
		t.Errorf("Deployment %s runs `sample %s`, which does not exist", deployment, argv[2])
	}
}

// istioDoc is one parsed Istio resource.
type istioDoc struct {
	kind, name string
	spec       proto.Message
}

// parseIstio decodes every document of an Istio YAML file into istio.io/api
// types, rejecting unknown fields as Istio's validation does.
func parseIstio(t *testing.T, name string) []istioDoc {
	t.Helper()
	b, err := FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []istioDoc
	for _, d := range docs(t, b) {
		j, err := yaml.YAMLToJSON(d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var env struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(j, &env); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if env.APIVersion != "networking.istio.io/v1" {
			t.Errorf("%s: %s %s apiVersion = %q, want networking.istio.io/v1", name, env.Kind, env.Metadata.Name, env.APIVersion)
		}
		var spec proto.Message
		switch env.Kind {
		case "VirtualService":
			spec = &networking.VirtualService{}
		case "DestinationRule":
			spec = &networking.DestinationRule{}
		case "Gateway":
			spec = &networking.Gateway{}
		default:
			t.Fatalf("%s: unexpected kind %q", name, env.Kind)
		}
		if err := protojson.Unmarshal(env.Spec, spec); err != nil {
			t.Fatalf("%s: %s %s: %v", name, env.Kind, env.Metadata.Name, err)
		}
		out = append(out, istioDoc{env.Kind, env.Metadata.Name, spec})
	}
	return out
}

// routes lists the destinations of each HTTP rule, written host/subset[:weight].
func routes(vs *networking.VirtualService) [][]string {
	var out [][]string
	for _, h := range vs.Http {
		var rs []string
		for _, r := range h.Route {
			s := r.Destination.Host + "/" + r.Destination.Subset
			if r.Weight != 0 {
				s += ":" + strconv.Itoa(int(r.Weight))
			}
			rs = append(rs, s)
		}
		out = append(out, rs)
	}
	return out
}

func TestNetworking(t *testing.T) {
	subsets := map[string][]string{}
	for _, d := range parseIstio(t, "bookinfo/networking/destination-rule-all.yaml") {
		dr := d.spec.(*networking.DestinationRule)
		if dr.Host != d.name {
			t.Errorf("DestinationRule %s host = %q", d.name, dr.Host)
		}
		for _, s := range dr.Subsets {
			if s.Labels["version"] != s.Name {
				t.Errorf("DestinationRule %s subset %s labels = %v", d.name, s.Name, s.Labels)
			}
			subsets[dr.Host] = append(subsets[dr.Host], s.Name)
		}
	}
	for host, want := range map[string][]string{"productpage": {"v1"}, "reviews": {"v1", "v2", "v3"}, "ratings": {"v1"}, "details": {"v1"}} {
		for _, s := range want {
			if !slices.Contains(subsets[host], s) {
				t.Errorf("destination-rule-all lacks subset %s of %s", s, host)
			}
		}
	}

	jason := func(h *networking.HTTPRoute) bool {
		return len(h.Match) == 1 && h.Match[0].Headers["end-user"].GetExact() == "jason"
	}
	tests := []struct {
		file   string
		routes map[string][][]string // VirtualService name -> routes per http rule
		check  func(t *testing.T, vs map[string]*networking.VirtualService)
	}{
		{"virtual-service-all-v1.yaml", map[string][][]string{
			"productpage": {{"productpage/v1"}}, "reviews": {{"reviews/v1"}}, "ratings": {{"ratings/v1"}}, "details": {{"details/v1"}},
		}, nil},
		{"virtual-service-reviews-v2-v3.yaml", map[string][][]string{"reviews": {{"reviews/v2:50", "reviews/v3:50"}}}, nil},
		{"virtual-service-reviews-50-v3.yaml", map[string][][]string{"reviews": {{"reviews/v1:50", "reviews/v3:50"}}}, nil},
		{"virtual-service-reviews-80-20.yaml", map[string][][]string{"reviews": {{"reviews/v1:80", "reviews/v2:20"}}}, nil},
		{"virtual-service-reviews-90-10.yaml", map[string][][]string{"reviews": {{"reviews/v1:90", "reviews/v2:10"}}}, nil},
		{"virtual-service-reviews-v3.yaml", map[string][][]string{"reviews": {{"reviews/v3"}}}, nil},
		{"virtual-service-reviews-test-v2.yaml", map[string][][]string{"reviews": {{"reviews/v2"}, {"reviews/v1"}}},
			func(t *testing.T, vs map[string]*networking.VirtualService) {
				if !jason(vs["reviews"].Http[0]) {
					t.Error("first rule does not match end-user jason")
				}
			}},
		{"virtual-service-reviews-jason-v2-v3.yaml", map[string][][]string{"reviews": {{"reviews/v2"}, {"reviews/v3"}}},
			func(t *testing.T, vs map[string]*networking.VirtualService) {
				if !jason(vs["reviews"].Http[0]) {
					t.Error("first rule does not match end-user jason")
				}
			}},
		{"virtual-service-ratings-test-delay.yaml", map[string][][]string{"ratings": {{"ratings/v1"}, {"ratings/v1"}}},
			func(t *testing.T, vs map[string]*networking.VirtualService) {
				h := vs["ratings"].Http[0]
				if !jason(h) {
					t.Error("first rule does not match end-user jason")
				}
				d := h.GetFault().GetDelay()
				if d.GetFixedDelay().AsDuration().Seconds() != 7 || d.GetPercentage().GetValue() != 100 {
					t.Errorf("delay = %v, want 7s for 100%%", d)
				}
			}},
		{"virtual-service-ratings-test-abort.yaml", map[string][][]string{"ratings": {{"ratings/v1"}, {"ratings/v1"}}},
			func(t *testing.T, vs map[string]*networking.VirtualService) {
				h := vs["ratings"].Http[0]
				if !jason(h) {
					t.Error("first rule does not match end-user jason")
				}
				a := h.GetFault().GetAbort()
				if a.GetHttpStatus() != 500 || a.GetPercentage().GetValue() != 100 {
					t.Errorf("abort = %v, want 500 for 100%%", a)
				}
			}},
	}
	seen := map[string]bool{"bookinfo-gateway.yaml": true, "destination-rule-all.yaml": true}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			vss := map[string]*networking.VirtualService{}
			for _, d := range parseIstio(t, path.Join(BookinfoNetworking, tt.file)) {
				vs, ok := d.spec.(*networking.VirtualService)
				if !ok {
					t.Fatalf("%s %s, want only VirtualServices", d.kind, d.name)
				}
				if len(vs.Hosts) != 1 || vs.Hosts[0] != d.name {
					t.Errorf("VirtualService %s hosts = %v", d.name, vs.Hosts)
				}
				vss[d.name] = vs
			}
			if len(vss) != len(tt.routes) {
				t.Errorf("%d VirtualServices, want %d", len(vss), len(tt.routes))
			}
			for name, want := range tt.routes {
				vs, ok := vss[name]
				if !ok {
					t.Errorf("no VirtualService %s", name)
					continue
				}
				if got := routes(vs); !slices.EqualFunc(got, want, slices.Equal) {
					t.Errorf("VirtualService %s routes = %v, want %v", name, got, want)
				}
				for _, h := range vs.Http {
					for _, r := range h.Route {
						if !slices.Contains(subsets[r.Destination.Host], r.Destination.Subset) {
							t.Errorf("route to %s/%s: no such subset in destination-rule-all", r.Destination.Host, r.Destination.Subset)
						}
					}
				}
			}
			if tt.check != nil {
				tt.check(t, vss)
			}
		})
	}

	// Every file under networking/ is covered above.
	entries, err := fs.ReadDir(FS, BookinfoNetworking)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !seen[e.Name()] {
			t.Errorf("%s is not tested", e.Name())
		}
	}
}

func TestBookinfoGateway(t *testing.T) {
	docs := parseIstio(t, BookinfoGatewayPath)
	if len(docs) != 2 {
		t.Fatalf("%d documents, want Gateway and VirtualService", len(docs))
	}
	gw, ok := docs[0].spec.(*networking.Gateway)
	if !ok || docs[0].name != "bookinfo-gateway" {
		t.Fatalf("first document is %s %s, want Gateway bookinfo-gateway", docs[0].kind, docs[0].name)
	}
	if gw.Selector["istio"] != "ingressgateway" {
		t.Errorf("selector = %v", gw.Selector)
	}
	if len(gw.Servers) != 1 || gw.Servers[0].Port.Number != 8080 || gw.Servers[0].Port.Protocol != "HTTP" ||
		!slices.Equal(gw.Servers[0].Hosts, []string{"*"}) {
		t.Errorf("servers = %v", gw.Servers)
	}
	vs, ok := docs[1].spec.(*networking.VirtualService)
	if !ok || docs[1].name != "bookinfo" {
		t.Fatalf("second document is %s %s, want VirtualService bookinfo", docs[1].kind, docs[1].name)
	}
	if !slices.Equal(vs.Gateways, []string{"bookinfo-gateway"}) || !slices.Equal(vs.Hosts, []string{"*"}) {
		t.Errorf("gateways %v hosts %v", vs.Gateways, vs.Hosts)
	}
	var matches []string
	for _, m := range vs.Http[0].Match {
		switch u := m.Uri.MatchType.(type) {
		case *networking.StringMatch_Exact:
			matches = append(matches, "exact "+u.Exact)
		case *networking.StringMatch_Prefix:
			matches = append(matches, "prefix "+u.Prefix)
		}
	}
	want := []string{"exact /productpage", "prefix /static", "exact /login", "exact /logout", "prefix /api/v1/products"}
	if !slices.Equal(matches, want) {
		t.Errorf("matches = %v, want %v", matches, want)
	}
	d := vs.Http[0].Route[0].Destination
	if d.Host != "productpage" || d.Port.GetNumber() != 9080 {
		t.Errorf("destination = %v", d)
	}
}

func TestCommand(t *testing.T) {
	cmd := Command()
	var names []string
	for _, c := range cmd.Subcommands {
		names = append(names, c.Name)
	}
	want := []string{"bookinfo", "httpbin", "sleep", "helloworld", "tcp-echo", "ext-authz"}
	if cmd.Name != "sample" || !slices.Equal(names, want) {
		t.Fatalf("command %s with %v, want sample with %v", cmd.Name, names, want)
	}
	tests := []struct {
		args    []string
		wantErr bool
	}{
		{[]string{"meshlab", "sample", "bookinfo"}, true},
		{[]string{"meshlab", "sample", "bookinfo", "frontpage"}, true},
		{[]string{"meshlab", "sample", "bookinfo", "reviews", "extra"}, true},
		{[]string{"meshlab", "sample", "bookinfo", "--help"}, false},
		{[]string{"meshlab", "sample", "bookinfo", "reviews", "--help"}, false},
		{[]string{"meshlab", "sample", "bookinfo", "ratings", "--ratings-fault", "sometimes", "--addr", "127.0.0.1:0"}, true},
		{[]string{"meshlab", "sample", "sleep", "--help"}, false},
		{[]string{"meshlab", "sample", "curl", "--help"}, false},
		{[]string{"meshlab", "sample", "helloworld", "--help"}, false},
		{[]string{"meshlab", "sample", "tcp-echo", "--help"}, false},
		{[]string{"meshlab", "sample", "tcp-echo"}, true},
	}
	for _, tt := range tests {
		app := &cli.App{Name: "meshlab", Commands: []*cli.Command{Command()}, Writer: new(strings.Builder), ErrWriter: new(strings.Builder),
			ExitErrHandler: func(*cli.Context, error) {}}
		err := app.Run(tt.args)
		if (err != nil) != tt.wantErr {
			t.Errorf("%v: err = %v, want error %v", tt.args, err, tt.wantErr)
		}
	}
}
