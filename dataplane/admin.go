package dataplane

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshlab/meshlab/dataplane/identity"
	"github.com/meshlab/meshlab/dataplane/proxy"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// adminHandler is the proxy's admin API with Envoy's SecretsConfigDump in
// /config_dump: the identity agent's "default" and "ROOTCA" and the
// kubernetes:// credentials from the control plane, as Envoy lists the
// secrets it was served, private keys redacted.
func adminHandler(p *proxy.Proxy, agent *identity.Agent) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", p.AdminHandler())
	mux.Handle("/stats/prometheus", statsHandler(p.AdminHandler(), agent))
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, r *http.Request) {
		dump, err := configDump(p, agent)
		if err != nil {
			http.Error(w, fmt.Sprintf("build config dump: %v", err), http.StatusInternalServerError)
			return
		}
		proxy.WriteConfigDump(w, dump)
	})
	return mux
}

func configDump(p *proxy.Proxy, agent *identity.Agent) (*adminv3.ConfigDump, error) {
	dump, err := p.ConfigDump()
	if err != nil {
		return nil, err
	}
	sd := &adminv3.SecretsConfigDump{}
	if agent != nil {
		ds, err := agent.DynamicSecrets()
		if err != nil {
			return nil, err
		}
		sd.DynamicActiveSecrets = append(sd.DynamicActiveSecrets, ds...)
	}
	snap := p.Snapshot()
	names := make([]string, 0, len(snap.Secrets))
	for n := range snap.Secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	v := snap.Versions[xdsclient.SecretType]
	for _, n := range names {
		a, err := anypb.New(identity.RedactSecret(snap.Secrets[n]))
		if err != nil {
			return nil, fmt.Errorf("config dump of secret %s: %w", n, err)
		}
		ds := &adminv3.SecretsConfigDump_DynamicSecret{Name: n, VersionInfo: v, Secret: a}
		if t, ok := snap.Updated[xdsclient.SecretType]; ok {
			ds.LastUpdated = timestamppb.New(t)
		}
		sd.DynamicActiveSecrets = append(sd.DynamicActiveSecrets, ds)
	}
	a, err := anypb.New(sd)
	if err != nil {
		return nil, err
	}
	dump.Configs = append(dump.Configs, a)
	return dump, nil
}

// statsHandler is h's /stats/prometheus with the agent's
// istio_agent_cert_expiry_seconds{resource_name="default"} after it, as
// Istio merges the agent's metrics into the proxy's.
func statsHandler(h http.Handler, agent *identity.Agent) http.Handler {
	if agent == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if exp, ok := agent.CertExpiry(); ok {
			fmt.Fprintf(w, "# TYPE istio_agent_cert_expiry_seconds gauge\nistio_agent_cert_expiry_seconds{resource_name=\"default\"} %g\n", time.Until(exp).Seconds())
		}
	})
}
