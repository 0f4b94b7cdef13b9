// Package validation is a compile-only placeholder (H4) until H2's package is merged; the lead deletes this file.
package validation

import (
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

type Check struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Severity string `json:"severity"`
	Path     string `json:"path"`
}

type Result struct {
	ObjectType string  `json:"objectType"`
	Name       string  `json:"name"`
	Namespace  string  `json:"namespace"`
	Valid      bool    `json:"valid"`
	Checks     []Check `json:"checks"`
}

func Validate(resources []config.Resource, services []registry.Service, workloads []registry.Workload) map[string]*Result {
	return nil
}
