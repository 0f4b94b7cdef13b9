package zipkin

import _ "embed"

// Manifest is the trace store's Deployment and Services in istio-system, in
// the shape of Istio's samples/addons/extras/zipkin.yaml, for both runtimes
// to apply. Its image is meshlab.local/meshlab:dev, as the samples'.
//
//go:embed manifest.yaml
var Manifest []byte
