package controlplane

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/xds"
)

// bucketSecrets holds TLS secrets (api.Secret as JSON) by namespace/name:
// the lab's stand-in for Kubernetes Secrets, served to gateways over SDS.
const bucketSecrets = "secrets"

// storedSecret is what the bucket keeps.
type storedSecret struct {
	api.Secret
	Created time.Time `json:"created"`
}

// secretsChanged wakes the push loop after a secret changed: secrets are
// metadata and do not move the store revision, so the push version's
// generation moves instead.
func (s *Server) secretsChanged() {
	s.regGen.Add(1)
	select {
	case s.secretWake <- struct{}{}:
	default:
	}
}

func (s *Server) handlePutSecret(w http.ResponseWriter, r *http.Request) {
	var in api.Secret
	if !decode(w, r, &in) {
		return
	}
	if in.Type == "" {
		in.Type = api.SecretTypeTLS
	}
	info, err := checkSecret(in)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("secret %s/%s: %v", in.Namespace, in.Name, err))
		return
	}
	st := storedSecret{Secret: in, Created: time.Now().UTC()}
	info.Created = st.Created
	if err := s.persist(bucketSecrets, in.Namespace+"/"+in.Name, st); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.secretsChanged()
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) handleDeleteSecret(w http.ResponseWriter, r *http.Request) {
	ns, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("name")
	key := ns + "/" + name
	old, err := s.store.GetMeta(bucketSecrets, key)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if old == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("secret %q not found in namespace %q", name, ns))
		return
	}
	if err := s.persist(bucketSecrets, key, nil); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.secretsChanged()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleSecrets(w http.ResponseWriter, r *http.Request) {
	ns := r.URL.Query().Get("namespace")
	all, err := s.storedSecrets()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := []api.SecretInfo{}
	for _, st := range all {
		if ns != "" && st.Namespace != ns {
			continue
		}
		info, _ := checkSecret(st.Secret)
		info.Created = st.Created
		out = append(out, info)
	}
	writeJSON(w, http.StatusOK, out)
}

// storedSecrets are the secrets of the store, by namespace and name.
func (s *Server) storedSecrets() ([]storedSecret, error) {
	m, err := s.store.ListMeta(bucketSecrets)
	if err != nil {
		return nil, err
	}
	out := make([]storedSecret, 0, len(m))
	for key, b := range m {
		var st storedSecret
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("decode secret %s: %w", key, err)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out, nil
}

// xdsSecrets are the stored secrets as translation takes them.
func (s *Server) xdsSecrets() ([]xds.Secret, error) {
	all, err := s.storedSecrets()
	if err != nil {
		return nil, err
	}
	out := make([]xds.Secret, 0, len(all))
	for _, st := range all {
		out = append(out, xds.Secret{Namespace: st.Namespace, Name: st.Name, Cert: st.Cert, Key: st.Key, CA: st.CA})
	}
	return out, nil
}

// checkSecret is what the API server and kubectl check of a TLS secret:
// names, type, and that tls.crt and tls.key are a matching PEM pair (and
// ca.crt PEM certificates); it describes the secret without its key.
func checkSecret(in api.Secret) (api.SecretInfo, error) {
	info := api.SecretInfo{Namespace: in.Namespace, Name: in.Name, Type: in.Type}
	for _, k := range []struct {
		name string
		v    []byte
	}{{"ca.crt", in.CA}, {"tls.crt", in.Cert}, {"tls.key", in.Key}} {
		if len(k.v) > 0 {
			info.Keys = append(info.Keys, k.name)
		}
	}
	if errs := validation.IsDNS1123Subdomain(in.Name); len(errs) > 0 {
		return info, fmt.Errorf("invalid name: %s", strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(in.Namespace); len(errs) > 0 {
		return info, fmt.Errorf("invalid namespace: %s", strings.Join(errs, "; "))
	}
	if in.Type != api.SecretTypeTLS {
		return info, fmt.Errorf("type %q: only %s secrets are supported", in.Type, api.SecretTypeTLS)
	}
	pair, err := tls.X509KeyPair(in.Cert, in.Key)
	if err != nil {
		return info, fmt.Errorf("tls.crt and tls.key: %w", err)
	}
	if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil {
		info.DNSNames, info.NotAfter = leaf.DNSNames, leaf.NotAfter
	}
	if len(in.CA) > 0 {
		if b, _ := pem.Decode(in.CA); b == nil || !x509.NewCertPool().AppendCertsFromPEM(in.CA) {
			return info, fmt.Errorf("ca.crt: no PEM certificates")
		}
	}
	return info, nil
}
