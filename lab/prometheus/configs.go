package prometheus

import (
	"bytes"
	_ "embed"
	"fmt"
	"net/url"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
)

// The configs are files, not Go strings, so that what the lab runs can be
// read, diffed against the walkthrough and handed to a stock Prometheus.
var (
	//go:embed kube.yaml
	kubeYAML []byte
	//go:embed local.yaml
	localYAML string

	localTmpl = template.Must(template.New("local.yaml").Option("missingkey=error").Parse(localYAML))
)

// DefaultSDBase is istiod's monitoring address inside the lab, where the
// control plane serves Prometheus HTTP SD (/debug/prometheus/sd).
const DefaultSDBase = "http://istiod.istio-system.svc:15014"

// DefaultSDRefresh is how often the local config asks the HTTP SD for
// targets. Kubernetes SD watches and sees a new pod at once; HTTP SD
// polls, and Prometheus's 60s default would leave a new pod unscraped for
// four scrape intervals.
const DefaultSDRefresh = 15 * time.Second

// KubeConfig is the Prometheus config for a Kubernetes runtime: the
// walkthrough's istiod and envoy-stats jobs with kubernetes_sd_configs,
// scrape_interval 15s.
func KubeConfig() []byte { return bytes.Clone(kubeYAML) }

// LocalConfig is the Prometheus config for the local runtime: the same
// jobs and relabel rules, discovering through the control plane's HTTP SD
// at sdBase (e.g. DefaultSDBase, or http://127.0.0.1:15014 for a
// Prometheus on the host), polled every refresh (0: DefaultSDRefresh).
func LocalConfig(sdBase string, refresh time.Duration) ([]byte, error) {
	u, err := url.Parse(sdBase)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("prometheus config: SD base %q: want http(s)://host:port of istiod's monitoring port", sdBase)
	}
	if refresh == 0 {
		refresh = DefaultSDRefresh
	}
	var b bytes.Buffer
	err = localTmpl.Execute(&b, struct {
		SDBase          string
		RefreshInterval string
	}{strings.TrimSuffix(sdBase, "/"), model.Duration(refresh).String()})
	if err != nil {
		return nil, fmt.Errorf("prometheus config: render local.yaml: %w", err)
	}
	return b.Bytes(), nil
}
