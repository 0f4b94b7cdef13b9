package dataplane

import (
	"fmt"
	"net/http"
	"sort"

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
