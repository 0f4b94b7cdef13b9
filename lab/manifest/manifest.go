// Package manifest owns reading the Kubernetes objects a runtime brings up
// itself (Namespaces, Services, ServiceAccounts, Deployments) from the same
// YAML that `kubectl apply` takes, so one set of manifests drives every
// runtime.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Objects are the objects of one or more manifests, in file order.
type Objects struct {
	Namespaces      []corev1.Namespace
	Services        []corev1.Service
	ServiceAccounts []corev1.ServiceAccount
	Deployments     []appsv1.Deployment
	// Other holds documents of kinds the runtime does not run itself (the
	// Istio resources among them), raw, for the caller to route elsewhere.
	Other []Document
}

// Document is one raw document and where it came from.
type Document struct {
	Source     string
	Index      int
	APIVersion string
	Kind       string
	JSON       []byte
}

// Parse reads a multi-document YAML manifest. Objects with no namespace get
// namespace; a document that does not decode is an error naming the file,
// the document and the reason.
func Parse(source string, data []byte, namespace string) (Objects, error) {
	var objs Objects
	dec := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		raw, err := dec.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return objs, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			i--
			continue
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return objs, fmt.Errorf("%s: document %d: not YAML: %w", source, i, err)
		}
		if string(js) == "null" {
			i--
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(js, &head); err != nil || head.Kind == "" {
			return objs, fmt.Errorf("%s: document %d: want a Kubernetes object with apiVersion and kind", source, i)
		}
		into := func(v any) error {
			if err := yaml.UnmarshalStrict(js, v); err != nil {
				return fmt.Errorf("%s: document %d (%s): %w", source, i, head.Kind, err)
			}
			return nil
		}
		switch head.APIVersion + "/" + head.Kind {
		case "v1/Namespace":
			var o corev1.Namespace
			if err := into(&o); err != nil {
				return objs, err
			}
			objs.Namespaces = append(objs.Namespaces, o)
		case "v1/Service":
			var o corev1.Service
			if err := into(&o); err != nil {
				return objs, err
			}
			defaultNS(&o.Namespace, namespace)
			objs.Services = append(objs.Services, o)
		case "v1/ServiceAccount":
			var o corev1.ServiceAccount
			if err := into(&o); err != nil {
				return objs, err
			}
			defaultNS(&o.Namespace, namespace)
			objs.ServiceAccounts = append(objs.ServiceAccounts, o)
		case "apps/v1/Deployment":
			var o appsv1.Deployment
			if err := into(&o); err != nil {
				return objs, err
			}
			defaultNS(&o.Namespace, namespace)
			objs.Deployments = append(objs.Deployments, o)
		default:
			objs.Other = append(objs.Other, Document{Source: source, Index: i, APIVersion: head.APIVersion, Kind: head.Kind, JSON: js})
		}
	}
}

func defaultNS(ns *string, def string) {
	if *ns == "" {
		*ns = def
	}
}
