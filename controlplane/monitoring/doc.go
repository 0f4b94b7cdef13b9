// Package monitoring is istiod's side of Prometheus: the pilot_*,
// citadel_* and galley_* series of its /metrics on 15014, with Istio's
// names, types, labels and buckets, and the HTTP service discovery that
// gives Prometheus the targets Kubernetes SD would on a runtime without a
// Kubernetes API.
package monitoring
