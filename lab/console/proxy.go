package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/meshlab/meshlab/lab"
)

// dumpTypes are the config_dump sections proxy-config shows, by the name
// the API takes. The split is by the sections' @type, as Envoy's admin
// ConfigDump lists them (lab/cmd's proxy-config decodes the same dump with
// protojson, unexported there; the console only needs the sections).
var dumpTypes = map[string]string{
	"listeners": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
	"routes":    "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
	"clusters":  "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
	"endpoints": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
	"secrets":   "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
}

func (s *server) configDump(r *http.Request) (any, error) {
	ns, pod, what := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("what")
	typ, ok := dumpTypes[what]
	if !ok && what != "all" {
		return nil, badRequest("%q: want listeners, routes, clusters, endpoints, secrets or all", what)
	}
	m, err := s.meshSnapshot(r.Context())
	if err != nil {
		return nil, err
	}
	p, ok := proxyOf(m, ns, pod)
	if !ok {
		return nil, notFound("pod %s/%s has no proxy connected to the control plane", ns, pod)
	}
	raw, err := s.cp.ConfigDump(r.Context(), p.ID)
	if err != nil {
		return nil, fmt.Errorf("read the config dump of %s/%s: %w", ns, pod, err)
	}
	var dump struct {
		Configs []json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal(raw, &dump); err != nil {
		return nil, fmt.Errorf("decode the config dump of %s/%s: %w", ns, pod, err)
	}
	var out any = map[string]any{"configs": dump.Configs}
	if what != "all" {
		out = map[string]any{"@type": typ}
		for _, c := range dump.Configs {
			var head struct {
				Type string `json:"@type"`
			}
			if json.Unmarshal(c, &head) == nil && head.Type == typ {
				var v any
				if err := json.Unmarshal(c, &v); err != nil {
					return nil, fmt.Errorf("decode %s of %s/%s: %w", what, ns, pod, err)
				}
				out = v
				break
			}
		}
	}
	return redact(out), nil
}

// redact replaces private keys anywhere in a dump, as proxy-config -o json
// does for secrets: the console's JSON may end up in a browser's cache.
func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			lk := strings.ToLower(k)
			if strings.Contains(lk, "private_key") || strings.Contains(lk, "privatekey") {
				x[k] = map[string]any{"inline_string": "[redacted]"}
				continue
			}
			x[k] = redact(e)
		}
	case []any:
		for i, e := range x {
			x[i] = redact(e)
		}
	}
	return v
}

const (
	defaultTailLines = 500
	maxTailLines     = 10000
	maxLogBytes      = 32 << 20
)

// cappedBuffer keeps the last bytes written once it has more than max.
type cappedBuffer struct {
	bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	n, _ := b.Buffer.Write(p)
	if over := b.Len() - b.max; over > 0 {
		b.Next(over)
	}
	return n, nil
}

func (s *server) podLogs(r *http.Request) (any, error) {
	ns, pod := r.PathValue("ns"), r.PathValue("pod")
	tail := defaultTailLines
	if v := r.URL.Query().Get("tailLines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxTailLines {
			return nil, badRequest("tailLines %q: want a number from 1 to %d", v, maxTailLines)
		}
		tail = n
	}
	if s.o.Runtime == nil {
		return nil, &apiError{http.StatusNotImplemented, "logs: this console runs without the lab's runtime, which reads them"}
	}
	buf := &cappedBuffer{max: maxLogBytes}
	err := s.o.Runtime.Logs(r.Context(), lab.LogOptions{Namespace: ns, Pod: pod, Container: r.URL.Query().Get("container"), Out: buf})
	if err != nil {
		if errors.Is(err, r.Context().Err()) {
			return nil, err
		}
		return nil, notFound("logs of %s/%s: %v", ns, pod, err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		lines = nil
	}
	if len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	type entry struct {
		Message string `json:"message"`
	}
	entries := make([]entry, 0, len(lines))
	for _, l := range lines {
		entries = append(entries, entry{Message: l})
	}
	return map[string]any{"entries": entries}, nil
}
