package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/ca"
	"github.com/meshlab/meshlab/controlplane/csr"
)

// accessIssuePodToken stands for the Kubernetes counterpart of a pod
// token, a TokenRequest (create serviceaccounts/token); Access names no
// subresource, so it asks for create on service accounts.
var accessIssuePodToken = Access{Verb: "create", Group: "", Resource: "serviceaccounts"}

// newCertService makes the certificate service of opts: on a cluster,
// callers prove who they are with projected service account tokens
// (TokenReview); on the local runtime with tokens the control plane issues
// per pod, kept in st.
func newCertService(opts Options, c *ca.CA, st csr.Store) (*csr.Server, *csr.PodTokens, error) {
	var auth csr.Authenticator
	var tokens *csr.PodTokens
	if opts.Kube != nil {
		k, err := csr.NewKubeAuthenticator(opts.Kube)
		if err != nil {
			return nil, nil, err
		}
		auth = k
	} else {
		tokens = csr.NewPodTokens(st)
		auth = tokens
	}
	srv, err := csr.New(csr.Options{CA: c, Auth: auth, Logger: opts.Logger, Policy: ca.WorkloadPolicy{
		TrustDomain: opts.TrustDomain, DefaultTTL: opts.WorkloadCertTTL, MaxTTL: opts.MaxWorkloadCertTTL,
	}})
	if err != nil {
		return nil, nil, err
	}
	return srv, tokens, nil
}

// listenCSR opens the certificate service's TLS port; nil, nil when
// Options.CSRAddr is empty.
func (s *Server) listenCSR() (net.Listener, tls.Certificate, error) {
	if s.opts.CSRAddr == "" {
		return nil, tls.Certificate{}, nil
	}
	// istiod's serving certificate: the names proxies dial it by.
	cert, err := s.ca.ServingCert(WebhookDNSNames, WebhookIPs)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("certificate service serving certificate: %w", err)
	}
	l, err := net.Listen("tcp", s.opts.CSRAddr)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("listen for the certificate service on %s: %w", s.opts.CSRAddr, err)
	}
	s.csrAddr = l.Addr()
	s.log.Info("certificate service serving", "addr", l.Addr().String())
	return l, cert, nil
}

// CSRAddr is where the certificate service listens, once Serve has opened
// it; nil when ctx ends first or it is off.
func (s *Server) CSRAddr(ctx context.Context) net.Addr {
	select {
	case <-s.listening:
		return s.csrAddr
	case <-ctx.Done():
		return nil
	}
}

// PodTokens are the local runtime's per-pod credentials for the
// certificate service; nil on a cluster, where pods have projected service
// account tokens.
func (s *Server) PodTokens() *csr.PodTokens { return s.podTokens }

func (s *Server) handleIssuePodToken(w http.ResponseWriter, r *http.Request) {
	if s.podTokens == nil {
		writeError(w, http.StatusConflict, "pod tokens are the local runtime's: on a cluster, istio-proxy sends its projected service account token (audience istio-ca)")
		return
	}
	var req api.PodTokenRequest
	if !decode(w, r, &req) {
		return
	}
	token, err := s.podTokens.Issue(req.Namespace, req.ServiceAccount, req.Pod)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id := ca.Identity{Namespace: req.Namespace, ServiceAccount: req.ServiceAccount}
	writeJSON(w, http.StatusOK, api.PodToken{Token: token, Identity: id.SPIFFE(s.opts.TrustDomain)})
}

func (s *Server) handleRevokePodToken(w http.ResponseWriter, r *http.Request) {
	if s.podTokens == nil {
		writeError(w, http.StatusConflict, "pod tokens are the local runtime's")
		return
	}
	ns, pod := r.URL.Query().Get("namespace"), r.URL.Query().Get("pod")
	if ns == "" || pod == "" {
		writeError(w, http.StatusBadRequest, "revoke a pod token: give ?namespace=NS&pod=POD")
		return
	}
	if err := s.podTokens.Revoke(ns, pod); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
