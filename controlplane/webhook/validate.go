package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/meshlab/meshlab/controlplane/config"
)

// Validate is the validating webhook for Istio configuration: a created or
// updated resource is checked against its schema and meshlab's validation,
// as `meshlab apply` checks it, and refused with the same message, which
// names the resource as "<kind> <namespace>/<name>" and the field.
// Deletes, and objects that are not Istio's, are admitted.
func Validate(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return Allow()
	}
	if !config.IsIstioKind(req.Kind.Group+"/"+req.Kind.Version, req.Kind.Kind) {
		return Allow()
	}
	doc, err := withNamespace(req.Object.Raw, req.Namespace)
	if err != nil {
		return Errorf("decode %s %s/%s: %v", req.Kind.Kind, req.Namespace, req.Name, err)
	}
	r, err := config.Unmarshal(doc)
	if err == nil {
		err = config.Validate(r)
	}
	if err != nil {
		return Deny(http.StatusUnprocessableEntity, err.Error())
	}
	return Allow()
}

// withNamespace puts the request's namespace into an object that names none
// (kubectl leaves it to the API server), so that errors name the right one.
func withNamespace(raw []byte, ns string) ([]byte, error) {
	// Numbers stay as written: the schema check tells 1 from 1.5.
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil || ns == "" {
		return raw, nil
	}
	if cur, _ := meta["namespace"].(string); cur != "" {
		return raw, nil
	}
	meta["namespace"] = ns
	return json.Marshal(obj)
}
