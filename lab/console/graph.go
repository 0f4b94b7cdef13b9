package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/meshlab/meshlab/lab/console/graph"
)

var namespaceName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func boolParam(r *http.Request, name string, def bool) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("%s %q: want true or false", name, v)
	}
	return b, nil
}

func oneOf(r *http.Request, name string, allowed ...string) (string, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return "", nil
	}
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", badRequest("%s %q: want one of %s", name, v, strings.Join(allowed, ", "))
}

// graphOptions reads Kiali's graph query parameters; a bad one is a 400
// naming it and what it takes.
func graphOptions(r *http.Request, namespaces []string) (graph.Options, error) {
	o := graph.Options{Namespaces: namespaces}
	var err error
	if o.GraphType, err = oneOf(r, "graphType", "app", "versionedApp", "workload", "service"); err != nil {
		return o, err
	}
	if o.Duration, err = durationParam(r, "duration", 10*time.Minute); err != nil {
		return o, err
	}
	if o.InjectServiceNodes, err = boolParam(r, "injectServiceNodes", true); err != nil {
		return o, err
	}
	if o.IdleEdges, err = boolParam(r, "idleEdges", false); err != nil {
		return o, err
	}
	if o.IdleNodes, err = boolParam(r, "idleNodes", false); err != nil {
		return o, err
	}
	if o.ResponseTime, err = oneOf(r, "responseTime", "avg", "50", "95", "99"); err != nil {
		return o, err
	}
	if o.Throughput, err = oneOf(r, "throughput", "request", "response"); err != nil {
		return o, err
	}
	if q := r.URL.Query(); q.Has("appenders") {
		o.Appenders = []string{}
		for _, a := range strings.Split(q.Get("appenders"), ",") {
			if a = strings.TrimSpace(a); a != "" {
				o.Appenders = append(o.Appenders, a)
			}
		}
	}
	if v := r.URL.Query().Get("queryTime"); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs <= 0 {
			return o, badRequest("queryTime %q: want unix seconds", v)
		}
		o.QueryTime = time.Unix(secs, 0)
	}
	o.Cluster = ""
	return o, nil
}

func parseNamespaces(v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, badRequest("namespaces: required, a comma-separated list of namespaces (e.g. namespaces=default,istio-system)")
	}
	var out []string
	for _, ns := range strings.Split(v, ",") {
		ns = strings.TrimSpace(ns)
		if !namespaceName.MatchString(ns) {
			return nil, badRequest("namespaces: %q is not a namespace name (lower-case letters, digits and '-')", ns)
		}
		out = append(out, ns)
	}
	return out, nil
}

func (s *server) buildGraph(r *http.Request, o graph.Options) (*graph.Config, error) {
	if o.Cluster == "" {
		o.Cluster = s.o.Cluster
	}
	o.PrometheusURL = s.o.PrometheusURL
	m, err := s.meshSnapshot(r.Context())
	if err != nil {
		return nil, err
	}
	g, err := graph.Build(r.Context(), s.prom, m.graphMesh(), o)
	if errors.Is(err, graph.ErrBadOptions) {
		return nil, badRequest("%s", err.Error())
	}
	if err != nil {
		return nil, fmt.Errorf("build the graph: %w", err)
	}
	return g, nil
}

func (s *server) namespacesGraph(r *http.Request) (any, error) {
	nss, err := parseNamespaces(r.URL.Query().Get("namespaces"))
	if err != nil {
		return nil, err
	}
	o, err := graphOptions(r, nss)
	if err != nil {
		return nil, err
	}
	return s.buildGraph(r, o)
}

// nodeGraph is Kiali's node graph: the namespace's graph cut down to the
// node's elements and their neighbours. It works on the JSON so that it
// depends only on Kiali's field names, not on the graph package's types.
func (s *server) nodeGraph(r *http.Request, k entityKind) (any, error) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if !namespaceName.MatchString(ns) {
		return nil, badRequest("namespace %q: not a namespace name", ns)
	}
	o, err := graphOptions(r, []string{ns})
	if err != nil {
		return nil, err
	}
	g, err := s.buildGraph(r, o)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("encode the graph: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("decode the graph: %w", err)
	}
	field := map[entityKind]string{kindApp: "app", kindWorkload: "workload", kindService: "service"}[k]
	elems, _ := doc["elements"].(map[string]any)
	nodes, _ := elems["nodes"].([]any)
	edges, _ := elems["edges"].([]any)
	dataOf := func(e any) map[string]any {
		m, _ := e.(map[string]any)
		d, _ := m["data"].(map[string]any)
		return d
	}
	focus := map[string]bool{}
	for _, n := range nodes {
		d := dataOf(n)
		if d["namespace"] == ns && d[field] == name && (k != kindService || d["nodeType"] == "service") {
			focus[fmt.Sprint(d["id"])] = true
		}
	}
	keep := map[string]bool{}
	for id := range focus {
		keep[id] = true
	}
	nodeType := map[string]any{}
	for _, n := range nodes {
		d := dataOf(n)
		nodeType[fmt.Sprint(d["id"])] = d["nodeType"]
	}
	// An injected service node next to the focus is only half a hop: the
	// callers into it (when it leads to the focus) and what it leads to
	// (when the focus calls it) are the node's real neighbours, as Kiali
	// shows them.
	upstream, downstream := map[string]bool{}, map[string]bool{}
	for _, e := range edges {
		d := dataOf(e)
		src, dst := fmt.Sprint(d["source"]), fmt.Sprint(d["target"])
		if focus[dst] && !focus[src] && nodeType[src] == "service" {
			upstream[src] = true
		}
		if focus[src] && !focus[dst] && nodeType[dst] == "service" {
			downstream[dst] = true
		}
	}
	keptEdges := []any{}
	for _, e := range edges {
		d := dataOf(e)
		src, dst := fmt.Sprint(d["source"]), fmt.Sprint(d["target"])
		if focus[src] || focus[dst] || upstream[dst] || downstream[src] {
			keptEdges = append(keptEdges, e)
			keep[src], keep[dst] = true, true
		}
	}
	keptNodes := []any{}
	for _, n := range nodes {
		d := dataOf(n)
		if keep[fmt.Sprint(d["id"])] {
			keptNodes = append(keptNodes, n)
		}
	}
	// Boxes (namespace, app) around kept nodes stay.
	for _, n := range nodes {
		d := dataOf(n)
		if d["nodeType"] == "box" && !keep[fmt.Sprint(d["id"])] {
			for _, kn := range keptNodes {
				if dataOf(kn)["parent"] == d["id"] {
					keptNodes = append(keptNodes, n)
					break
				}
			}
		}
	}
	if elems == nil {
		elems = map[string]any{}
		doc["elements"] = elems
	}
	elems["nodes"], elems["edges"] = keptNodes, keptEdges
	if len(focus) == 0 && doc["emptyReason"] == nil {
		doc["emptyReason"] = map[string]string{"code": "no-traffic",
			"message": fmt.Sprintf("%s %s/%s has no telemetry in the last %s: send it traffic, or widen the duration", k, ns, name, o.Duration)}
	}
	return doc, nil
}
