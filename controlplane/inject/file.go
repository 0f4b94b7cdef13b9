package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Result says what File did to one document that carries pods.
type Result struct {
	Doc      int // 1-based, as people count documents
	Kind     string
	Name     string
	Decision Decision
}

// templatePaths says where each kind keeps its pod; the empty path is the
// object itself (a Pod).
var templatePaths = map[string][]string{
	"Pod":                   nil,
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?\r?\n?$`)

// File rewrites a multi-document YAML (or JSON) stream as `istioctl
// kube-inject` does: every Pod, Deployment, StatefulSet, DaemonSet,
// ReplicaSet, Job and CronJob gets the sidecar in its pod template unless
// the pod opts out; other documents pass through as written.
func File(data []byte, p Params) ([]byte, []Result, error) {
	var out bytes.Buffer
	var results []Result
	n := 0
	for _, chunk := range split(data) {
		j, err := yaml.YAMLToJSON(chunk)
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: invalid YAML: %w", n+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue // empty or only comments
		}
		n++
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.UseNumber()
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			return nil, nil, fmt.Errorf("document %d: expected an object: %w", n, err)
		}
		changed, rs, err := injectObject(obj, n, p)
		if err != nil {
			return nil, nil, err
		}
		results = append(results, rs...)
		if out.Len() > 0 {
			out.WriteString("---\n")
		}
		if !changed {
			out.Write(bytes.TrimLeft(chunk, "\n"))
			if !bytes.HasSuffix(chunk, []byte("\n")) {
				out.WriteByte('\n')
			}
			continue
		}
		y, err := yaml.Marshal(obj)
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: encode: %w", n, err)
		}
		out.Write(y)
	}
	return out.Bytes(), results, nil
}

// injectObject injects into obj in place (into every item of a List).
func injectObject(obj map[string]any, doc int, p Params) (bool, []Result, error) {
	kind, _ := obj["kind"].(string)
	if items, ok := obj["items"].([]any); ok && kind == "List" {
		var all []Result
		changed := false
		for _, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			c, rs, err := injectObject(m, doc, p)
			if err != nil {
				return false, nil, err
			}
			changed = changed || c
			all = append(all, rs...)
		}
		return changed, all, nil
	}
	path, ok := templatePaths[kind]
	if !ok {
		return false, nil, nil
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	if ns == "" {
		ns = "default"
	}
	parent, key := obj, ""
	for i, k := range path {
		if i == len(path)-1 {
			key = k
			break
		}
		next, ok := parent[k].(map[string]any)
		if !ok {
			return false, nil, fmt.Errorf("document %d (%s %s): %s: expected an object", doc, kind, name, k)
		}
		parent = next
	}
	var src any = obj
	if key != "" {
		src = parent[key]
	}
	b, err := json.Marshal(src)
	if err != nil {
		return false, nil, fmt.Errorf("document %d (%s %s): %w", doc, kind, name, err)
	}
	var t corev1.PodTemplateSpec
	if err := json.Unmarshal(b, &t); err != nil {
		return false, nil, fmt.Errorf("document %d (%s %s): pod template: %w", doc, kind, name, err)
	}
	d := Template(ns, name, &t, p)
	res := []Result{{Doc: doc, Kind: kind, Name: name, Decision: d}}
	if !d.Inject {
		return false, res, nil
	}
	b, err = json.Marshal(t)
	if err != nil {
		return false, nil, err
	}
	var injected map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&injected); err != nil {
		return false, nil, err
	}
	prune(injected)
	if key != "" {
		parent[key] = injected
		return true, res, nil
	}
	// A Pod: its metadata and spec are the template's; the rest (apiVersion,
	// kind, status) stays.
	m, _ := injected["metadata"].(map[string]any)
	for k, v := range m {
		meta[k] = v
	}
	obj["spec"] = injected["spec"]
	return true, res, nil
}

// prune drops what a typed round trip adds but nobody wrote:
// creationTimestamp: null and empty resources: {}.
func prune(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
				continue
			}
			if m, ok := e.(map[string]any); ok && len(m) == 0 && k == "resources" {
				delete(x, k)
				continue
			}
			prune(e)
		}
	case []any:
		for _, e := range x {
			prune(e)
		}
	}
}

// split cuts a YAML stream at "---" lines, keeping each document's text.
func split(data []byte) [][]byte {
	locs := docSeparator.FindAllIndex(data, -1)
	var out [][]byte
	start := 0
	for _, l := range locs {
		out = append(out, data[start:l[0]])
		start = l[1]
	}
	return append(out, data[start:])
}
