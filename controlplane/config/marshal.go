package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
)

// Marshal turns a resource into a Kubernetes-shaped document: apiVersion,
// kind, metadata (name, namespace, labels, annotations, and, when they are
// set, resourceVersion as the decimal Revision and creationTimestamp) and
// spec in protojson's camelCase form without unset fields. It is what `get -o yaml|json` prints and what
// the store keeps.
func Marshal(r Resource) (map[string]any, error) {
	if r.Object != nil {
		return marshalKube(r)
	}
	if r.Spec == nil {
		return nil, fmt.Errorf("marshal %s: no spec", r.Key())
	}
	b, err := protojson.MarshalOptions{UseProtoNames: false, EmitUnpopulated: false}.Marshal(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("marshal %s spec: %w", r.Key(), err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // keep integers exact
	var spec map[string]any
	if err := dec.Decode(&spec); err != nil {
		return nil, fmt.Errorf("marshal %s spec: %w", r.Key(), err)
	}
	meta := map[string]any{"name": r.Name, "namespace": r.Namespace}
	if len(r.Labels) > 0 {
		meta["labels"] = r.Labels
	}
	if len(r.Annotations) > 0 {
		meta["annotations"] = r.Annotations
	}
	if r.Revision != 0 {
		meta["resourceVersion"] = strconv.FormatUint(r.Revision, 10)
	}
	if !r.CreationTimestamp.IsZero() {
		// metav1.Time's form, so Istio kinds print as workload kinds do.
		meta["creationTimestamp"] = r.CreationTimestamp.UTC().Format(time.RFC3339)
	}
	av := r.APIVersion
	if av == "" {
		if info, ok := kindInfo(r.Kind); ok {
			av = info.Group + "/" + info.Versions[0]
		}
	}
	return map[string]any{
		"apiVersion": av,
		"kind":       string(r.Kind),
		"metadata":   meta,
		"spec":       spec,
	}, nil
}
