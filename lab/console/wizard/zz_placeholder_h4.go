// Package wizard is a compile-only placeholder (H4) until H2's package is merged; the lead deletes this file.
package wizard

import "errors"

type Request struct {
	Action     string    `json:"action"`
	Namespace  string    `json:"namespace"`
	Service    string    `json:"service"`
	APIVersion string    `json:"apiVersion"`
	Versions   []string  `json:"versions"`
	Weights    []Weight  `json:"weights"`
	Rules      []Rule    `json:"rules"`
	Fault      *Fault    `json:"fault"`
	Timeouts   *Timeouts `json:"timeouts"`
	Advanced   *Advanced `json:"advanced"`
}

type Weight struct {
	Version string `json:"version"`
	Weight  int    `json:"weight"`
	Mirror  bool   `json:"mirror"`
}

type Rule struct{}
type Fault struct{}
type Timeouts struct{}
type Advanced struct{}

type Object struct {
	Kind, Namespace, Name string
	Document              map[string]any
}

func Generate(r Request) ([]Object, error) { return nil, errors.New("placeholder") }

func YAML(objs []Object) ([]byte, error) { return nil, errors.New("placeholder") }

const Label = "kiali_wizard"
