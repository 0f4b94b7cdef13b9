package analyze

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// Files is what a set of input files holds, as istioctl analyze reads
// them: Istio resources (checked against the schema exactly as apply
// checks them), and the Kubernetes Services and workloads (Deployments,
// Pods) of manifests, which stand in for the registry when no lab runs.
type Files struct {
	Resources []config.Resource
	Services  []registry.Service
	Workloads []registry.Workload
	Origins   map[string]Origin // by resource key
	// Schema has a SchemaValidationError for every document apply would
	// reject; those documents are not in Resources.
	Schema []Message
	// Documents counts the documents read.
	Documents int

	nodes map[string]*yaml.Node // resource key → its document, for Lines
	index map[string]int        // resource key → position in Resources
}

// Add reads one input (YAML or JSON, many documents), putting documents
// that name no namespace in namespace ("" for default).
func (f *Files) Add(file string, data []byte, namespace string) {
	if namespace == "" {
		namespace = "default"
	}
	if f.Origins == nil {
		f.Origins, f.nodes, f.index = map[string]Origin{}, map[string]*yaml.Node{}, map[string]int{}
	}
	docs, err := config.Split(data)
	if err != nil {
		f.Schema = append(f.Schema, Message{Type: SchemaValidationError, Text: "Schema validation error: " + err.Error(),
			Origin: &Origin{File: file}})
		return
	}
	nodes, starts := yamlDocuments(data)
	if len(nodes) != len(docs) {
		nodes = nil // a shape the locator does not follow; messages name documents instead of lines
	}
	f.Documents += len(docs)
	for i, d := range docs {
		o := Origin{File: file, Doc: d.Index}
		var node *yaml.Node
		if nodes != nil {
			node, o.Line = nodes[i], starts[i]
		}
		if config.IsIstioKind(d.APIVersion, d.Kind) {
			f.istio(file, d, namespace, o, node)
			continue
		}
		f.kubernetes(d, namespace)
	}
}

func (f *Files) istio(file string, d config.Document, namespace string, o Origin, node *yaml.Node) {
	rs, err := config.ParseInNamespace(file, d.JSON, namespace)
	var list config.ErrorList
	switch {
	case errors.As(err, &list):
		for _, e := range list {
			m := Message{Type: SchemaValidationError, Text: "Schema validation error: " + e.Msg,
				Kind: e.Kind, Namespace: e.Namespace, Name: e.Name, Field: e.Field}
			eo := o
			if l := fieldLine(node, e.Field); l > 0 {
				eo.Line = l
			}
			m.Origin = &eo
			f.Schema = append(f.Schema, m)
		}
		return
	case err != nil:
		f.Schema = append(f.Schema, Message{Type: SchemaValidationError, Text: "Schema validation error: " + err.Error(), Origin: &o})
		return
	}
	for _, r := range rs {
		// A later document with the same key replaces the earlier one, as
		// applying the files in order would.
		if i, ok := f.index[r.Key()]; ok {
			f.Resources[i] = r
		} else {
			f.index[r.Key()] = len(f.Resources)
			f.Resources = append(f.Resources, r)
		}
		f.Origins[r.Key()] = o
		if node != nil {
			f.nodes[r.Key()] = node
		}
	}
}

// kubeObject is the part of a Kubernetes Service, Deployment or Pod the
// analysis needs.
type kubeObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Selector json.RawMessage `json:"selector"`
		Ports    []struct {
			Name        string `json:"name"`
			Port        uint32 `json:"port"`
			Protocol    string `json:"protocol"`
			AppProtocol string `json:"appProtocol"`
		} `json:"ports"`
		Template struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		} `json:"template"`
	} `json:"spec"`
}

func (f *Files) kubernetes(d config.Document, namespace string) {
	var o kubeObject
	if json.Unmarshal(d.JSON, &o) != nil {
		return // not ours to judge; the runtime validates Kubernetes objects
	}
	ns := o.Metadata.Namespace
	if ns == "" {
		ns = namespace
	}
	switch o.Kind {
	case "Service":
		s := registry.Service{Name: o.Metadata.Name, Namespace: ns, Labels: o.Metadata.Labels}
		// No selector (an empty RawMessage) or a malformed one the API
		// server would refuse: the Service selects no pods here.
		if json.Unmarshal(o.Spec.Selector, &s.Selector) != nil {
			s.Selector = nil
		}
		for _, p := range o.Spec.Ports {
			s.Ports = append(s.Ports, registry.Port{Name: p.Name, Port: p.Port, Protocol: p.Protocol, AppProtocol: p.AppProtocol})
		}
		f.Services = append(f.Services, s)
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
		f.Workloads = append(f.Workloads, registry.Workload{Name: o.Metadata.Name, Namespace: ns,
			Labels: o.Spec.Template.Metadata.Labels, Ready: true})
	case "Pod":
		f.Workloads = append(f.Workloads, registry.Workload{Name: o.Metadata.Name, Namespace: ns,
			Labels: o.Metadata.Labels, Ready: true})
	}
}

// Lines finds the line of field in the resource with key, for Input.Lines.
func (f *Files) Lines(key, field string) int {
	return fieldLine(f.nodes[key], field)
}

var docSeparator = regexp.MustCompile(`^---(\s.*)?$`)

// yamlDocuments splits data into document nodes the way config.Split
// counts documents (empty ones skipped, lists expanded), with the line each
// starts on.
func yamlDocuments(data []byte) ([]*yaml.Node, []int) {
	var nodes []*yaml.Node
	var starts []int
	add := func(chunk []byte, first int) {
		var doc yaml.Node
		if yaml.Unmarshal(chunk, &doc) != nil || len(doc.Content) == 0 {
			return
		}
		n := doc.Content[0]
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		shift(n, first-1)
		for _, it := range expand(n) {
			nodes = append(nodes, it)
			starts = append(starts, it.Line)
		}
	}
	var cur bytes.Buffer
	first, line := 1, 0
	for _, l := range bytes.SplitAfter(data, []byte("\n")) {
		line++
		if docSeparator.Match(bytes.TrimRight(l, "\r\n")) {
			add(cur.Bytes(), first)
			cur.Reset()
			first = line + 1
			continue
		}
		cur.Write(l)
	}
	add(cur.Bytes(), first)
	return nodes, starts
}

// shift makes a chunk's node lines lines of the whole input.
func shift(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shift(c, by)
	}
}

func expand(n *yaml.Node) []*yaml.Node {
	switch n.Kind {
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, it := range n.Content {
			out = append(out, expand(it)...)
		}
		return out
	case yaml.MappingNode:
		kind := mapValue(n, "kind")
		items := mapValue(n, "items")
		if kind != nil && items != nil && strings.HasSuffix(kind.Value, "List") && items.Kind == yaml.SequenceNode {
			return expand(items)
		}
	}
	return []*yaml.Node{n}
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// fieldLine follows a path like spec.http[0].route[1].destination.subset
// (or spec.http[0].match[0].headers[end-user]) through a document and
// returns the line of the deepest part found, 0 when the document is
// unknown.
func fieldLine(doc *yaml.Node, field string) int {
	if doc == nil {
		return 0
	}
	n, line := doc, doc.Line
	for _, step := range pathSteps(field) {
		var next, at *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == step {
					at, next = n.Content[i], n.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(step); err == nil && i >= 0 && i < len(n.Content) {
				at, next = n.Content[i], n.Content[i]
			}
		}
		if next == nil {
			break
		}
		n, line = next, at.Line
	}
	return line
}

// pathSteps splits "a.b[0].c[key]" into a, b, 0, c, key.
func pathSteps(field string) []string {
	var out []string
	for _, part := range strings.Split(field, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if name != "" {
			out = append(out, name)
		}
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			out = append(out, idx)
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return out
}
