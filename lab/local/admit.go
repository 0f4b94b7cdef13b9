package local

import (
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/lab"
)

// checkRunnable refuses, before anything is sent, the documents of a batch
// that Kubernetes would take but the local runtime cannot run: every
// error names file, document, object and field, as the control plane's
// own errors do. Documents that do not decode are left to the control
// plane, whose strict decoding says what is wrong with them.
func checkRunnable(docs []lab.Document, namespace string) error {
	if namespace == "" {
		namespace = "default"
	}
	var errs config.ErrorList
	for _, d := range docs {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if json.Unmarshal(d.JSON, &head) != nil {
			continue
		}
		var kind, ns, name string
		var fes field.ErrorList
		switch head.APIVersion + "/" + head.Kind {
		case "apps/v1/Deployment":
			var dep appsv1.Deployment
			if json.Unmarshal(d.JSON, &dep) != nil {
				continue
			}
			kind, ns, name = head.Kind, dep.Namespace, dep.Name
			spec := field.NewPath("spec", "template", "spec")
			fes = CheckRunnable(&dep.Spec.Template.Spec, spec)
			for i := range dep.Spec.Template.Spec.Containers {
				c := &dep.Spec.Template.Spec.Containers[i]
				if err := checkContainerProbes(spec.Child("containers").Index(i).String(), c); err != nil {
					errs = append(errs, &config.Error{File: d.Source, Doc: d.Index, Kind: kind, Namespace: orDefault(ns, namespace), Name: name, Msg: err.Error()})
				}
			}
		case "v1/Service":
			var svc corev1.Service
			if json.Unmarshal(d.JSON, &svc) != nil {
				continue
			}
			kind, ns, name = head.Kind, svc.Namespace, svc.Name
			fes = CheckServiceRunnable(&svc.Spec, field.NewPath("spec"))
		default:
			continue
		}
		for _, e := range fes {
			errs = append(errs, &config.Error{File: d.Source, Doc: d.Index, Kind: kind, Namespace: orDefault(ns, namespace), Name: name,
				Field: e.Field, Msg: e.ErrorBody()})
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("nothing was applied: the batch has what the local runtime cannot run (use --runtime kind for these):\n%w", errs)
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
