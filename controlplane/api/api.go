// Package api owns the wire format of the control plane's HTTP API and its
// client. Every meshlab command that reads or changes mesh state (apply, get,
// delete, proxy-status, proxy-config, the lab registering pods) goes through
// it, because only the control plane opens the store.
//
// The API is served on the control plane's monitoring port (15014), beside
// /metrics and /debug, as istiod does.
package api

import (
	"encoding/json"
	"fmt"
	"github.com/meshlab/meshlab/controlplane/config"
	"time"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// Paths of the API.
const (
	PathApply      = "/api/v1/apply"
	PathDelete     = "/api/v1/delete"
	PathResources  = "/api/v1/resources"
	PathProxies    = "/api/v1/proxies"
	PathConfigDump = "/api/v1/configdump"
	PathServices   = "/api/v1/registry/services"
	PathWorkloads  = "/api/v1/registry/workloads"
	PathRegistry   = "/api/v1/registry"
	PathVersion    = "/version"
	PathReady      = "/ready"
	PathWaitSync   = "/api/v1/wait"
	PathWatch      = "/api/v1/watch"
)

// WatchTimeout is how long a watch call waits for a new revision before it
// answers with the current one.
const WatchTimeout = 20 * time.Second

// MaxRequestBytes bounds the body of every API request: the Kubernetes
// apiserver's limit (3 MiB, its MaxRequestBodyBytes, which follows etcd's
// request limit). An apply is one request however many documents it holds,
// so this is also the largest batch; the control plane answers a bigger
// body with 413 without reading it, and the client refuses to send one.
const MaxRequestBytes = 3 << 20

// Document is one resource in Kubernetes shape (apiVersion, kind, metadata,
// spec), with where it came from so errors can name it.
type Document struct {
	Source string          `json:"source,omitempty"` // file name, "-" for stdin
	Index  int             `json:"index"`            // 0-based document index in Source
	Object json.RawMessage `json:"object"`
}

// ApplyRequest stores a batch atomically: all of it or nothing.
type ApplyRequest struct {
	Documents []Document `json:"documents"`
	DryRun    bool       `json:"dryRun,omitempty"`
}

// Change is what happened to one resource.
type Change struct {
	Key string `json:"key"` // Kind/namespace/name
	Op  string `json:"op"`  // created, configured, unchanged, deleted
}

// Result is the outcome of an apply or delete.
type Result struct {
	Revision uint64   `json:"revision"`
	Changes  []Change `json:"changes"`
	// Warnings are for the user, as the Kubernetes API's Warning headers:
	// the batch was applied, but something in it does not do what its
	// author may expect.
	Warnings []string `json:"warnings,omitempty"`
}

// DeleteRequest deletes resources by key (Kind/namespace/name), atomically.
type DeleteRequest struct {
	Keys []string `json:"keys"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Message string   `json:"message"`
	Details []string `json:"details,omitempty"`
}

// ResourceList answers GET /api/v1/resources.
type ResourceList struct {
	Revision uint64            `json:"revision"`
	Items    []json.RawMessage `json:"items"`
}

// TypeStatus is a proxy's sync state for one xDS type.
type TypeStatus struct {
	Sent   string `json:"sent,omitempty"`
	Acked  string `json:"acked,omitempty"`
	Nacked string `json:"nacked,omitempty"`
	// Error is the proxy's message for the version it NACKed, or why the
	// control plane could not send it the latest one (State ERROR).
	Error string `json:"error,omitempty"`
	State string `json:"state"` // SYNCED, STALE, NOT SENT, ERROR
}

// ProxyStatus is one proxy as proxy-status shows it.
type ProxyStatus struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	IP        string `json:"ip"`
	Connected bool   `json:"connected"`
	// Identity is the SPIFFE ID the proxy's client certificate proved on
	// 15012; empty for a plaintext (15010) proxy, which gets no secrets.
	Identity string                `json:"identity,omitempty"`
	Types    map[string]TypeStatus `json:"types"` // keyed by short name: CDS, LDS, EDS, RDS
}

// Registry is the control plane's view of services and workloads.
type Registry struct {
	Services  []registry.Service  `json:"services"`
	Workloads []registry.Workload `json:"workloads"`
}

// Version answers GET /version.
type Version struct {
	Version   string    `json:"version"`
	Revision  uint64    `json:"revision"`
	StartedAt time.Time `json:"startedAt"`
}

// Documents parses a file of Istio resources (config.Parse: every error names
// the file, document and field) into API documents. Documents that name no
// namespace are put in namespace.
func Documents(source string, data []byte, namespace string) ([]Document, error) {
	rs, err := config.ParseInNamespace(source, data, namespace)
	if err != nil {
		return nil, err
	}
	docs := make([]Document, 0, len(rs))
	for i, r := range rs {
		obj, err := config.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("%s: encode %s: %w", source, r.Key(), err)
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("%s: encode %s: %w", source, r.Key(), err)
		}
		docs = append(docs, Document{Source: source, Index: i, Object: b})
	}
	return docs, nil
}
