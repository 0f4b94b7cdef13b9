package wizard

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"go.yaml.in/yaml/v3"
)

// keyOrder is the order Kiali's preview shows an object's keys in; keys
// not listed follow, sorted.
var keyOrder = []string{
	"kind", "apiVersion", "metadata", "namespace", "name", "labels", "annotations", "spec",
	"host", "hosts", "gateways", "selector", "subsets", "servers", "mtls", "trafficPolicy",
	"match", "route", "destination", "subset", "weight", "mirror", "mirrorPercentage",
	"fault", "delay", "abort", "percentage", "timeout", "retries",
}

// YAML writes the objects as one multi-document YAML stream, in order,
// each document ended by "---" as Kiali's preview has them.
func YAML(objs []Object) ([]byte, error) {
	var buf bytes.Buffer
	for _, o := range objs {
		n, err := node(o.Document)
		if err != nil {
			return nil, fmt.Errorf("write %s %s/%s: %w", o.Kind, o.Namespace, o.Name, err)
		}
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(n); err != nil {
			return nil, fmt.Errorf("write %s %s/%s: %w", o.Kind, o.Namespace, o.Name, err)
		}
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("write %s %s/%s: %w", o.Kind, o.Namespace, o.Name, err)
		}
		buf.WriteString("---\n")
	}
	return buf.Bytes(), nil
}

func node(v any) (*yaml.Node, error) {
	switch v := v.(type) {
	case map[string]any:
		if v == nil {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			a, b := slices.Index(keyOrder, keys[i]), slices.Index(keyOrder, keys[j])
			switch {
			case a >= 0 && b >= 0:
				return a < b
			case a >= 0 || b >= 0:
				return a >= 0
			}
			return keys[i] < keys[j]
		})
		n := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range keys {
			val, err := node(v[k])
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, val)
		}
		return n, nil
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for _, e := range v {
			en, err := node(e)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, en)
		}
		return n, nil
	default:
		var n yaml.Node
		if err := n.Encode(v); err != nil {
			return nil, err
		}
		return &n, nil
	}
}
