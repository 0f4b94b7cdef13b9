package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/meshconfig"
	"github.com/meshlab/meshlab/controlplane/monitoring"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/controlplane/store"
	"github.com/meshlab/meshlab/controlplane/xds"
)

// PathCARoot serves the mesh CA's root certificate in PEM, the caBundle
// of the webhook configurations.
const PathCARoot = "/api/v1/ca/root"

// Handler serves the API, /metrics and /ready. Every call that changes the
// mesh or reads its config, registry or secrets needs a credential (see
// guard); /metrics, /ready, /version and the CA root stay open, as on
// istiod's 15014, since they reveal nothing a pod could use to change the
// mesh.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.PathApply, s.guard(accessWriteConfig, s.handleApply))
	mux.HandleFunc("POST "+api.PathDelete, s.guard(accessWriteConfig, s.handleDelete))
	mux.HandleFunc("GET "+api.PathResources, s.guard(accessReadConfig, s.handleResources))
	mux.HandleFunc("GET "+api.PathProxies, s.guard(accessReadConfig, s.handleProxies))
	mux.HandleFunc("GET "+api.PathConfigDump, s.guard(accessReadConfig, s.handleConfigDump))
	mux.HandleFunc("PUT "+api.PathServices, s.guard(accessWriteRegistry, s.handlePutService))
	mux.HandleFunc("PUT "+api.PathWorkloads, s.guard(accessWriteRegistry, s.handlePutWorkload))
	mux.HandleFunc("DELETE "+api.PathWorkloads, s.guard(accessWriteRegistry, s.handleDeleteWorkload))
	mux.HandleFunc("GET "+api.PathRegistry, s.guard(accessReadRegistry, s.handleRegistry))
	mux.HandleFunc("GET "+api.PathWaitSync, s.guard(accessReadConfig, s.handleWait))
	mux.HandleFunc("GET "+api.PathWatch, s.guard(accessReadConfig, s.handleWatch))
	mux.HandleFunc("PUT "+api.PathSecrets, s.guard(accessWriteSecrets, s.handlePutSecret))
	mux.HandleFunc("DELETE "+api.PathSecrets, s.guard(accessWriteSecrets, s.handleDeleteSecret))
	mux.HandleFunc("GET "+api.PathSecrets, s.guard(accessReadSecrets, s.handleSecrets))
	mux.HandleFunc("POST "+api.PathPodTokens, s.guard(accessIssuePodToken, s.handleIssuePodToken))
	mux.HandleFunc("DELETE "+api.PathPodTokens, s.guard(accessIssuePodToken, s.handleRevokePodToken))
	mux.HandleFunc("GET "+api.PathVersion, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.Version{Version: s.opts.Version, Revision: s.store.Revision(), StartedAt: s.started})
	})
	mux.HandleFunc("GET "+PathCARoot, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.ca.RootPEM())
	})
	mux.HandleFunc("GET "+api.PathReady, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET "+monitoring.PathSD, s.handlePrometheusSD)
	return protect(mux)
}

// handlePrometheusSD answers Prometheus's HTTP SD with what its Kubernetes
// SD would find for ?role=pod|endpoints, in the ?namespace= given (all
// when none). Open, as /metrics: Prometheus's scrape config takes no
// credential for it, and the pod labels it shows are what Kubernetes SD
// shows any Prometheus with list rights.
func (s *Server) handlePrometheusSD(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	role := q.Get("role")
	if role != monitoring.RolePod && role != monitoring.RoleEndpoints {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("role %q: want role=%s or role=%s, as kubernetes_sd_configs", role, monitoring.RolePod, monitoring.RoleEndpoints))
		return
	}
	groups := monitoring.Targets(s.reg.Snapshot(), role, q["namespace"])
	if groups == nil {
		groups = []monitoring.TargetGroup{} // Prometheus wants a list, even empty
	}
	writeJSON(w, http.StatusOK, groups)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string, details ...string) {
	writeJSON(w, code, api.Error{Message: msg, Details: details})
}

// decode reads a JSON body of at most api.MaxRequestBytes: a bigger one is
// refused by its Content-Length before a byte is read, or once the limit
// is passed, and the connection is closed (MaxBytesReader).
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength > api.MaxRequestBytes {
		writeTooLarge(w, r.ContentLength)
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, api.MaxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeTooLarge(w, -1)
			return false
		}
		writeError(w, http.StatusBadRequest, "decode request body: "+err.Error())
		return false
	}
	return true
}

func writeTooLarge(w http.ResponseWriter, size int64) {
	what := "the request body is larger than"
	if size >= 0 {
		what = fmt.Sprintf("the request body (%d bytes) is larger than", size)
	}
	writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s the API's limit of %d bytes (3 MiB, as the Kubernetes API); apply the files in smaller batches", what, api.MaxRequestBytes))
}

// resources turns documents into validated resources; every bad document is
// reported, and none is stored if any is bad.
// Istio config is counted as istiod's validating webhook counts it
// (galley_validation_*): `meshlab apply` is the local runtime's kubectl.
func resources(docs []api.Document, m *monitoring.Metrics) ([]config.Resource, []string) {
	var out []config.Resource
	var errs []string
	for _, d := range docs {
		r, err := config.Unmarshal(d.Object)
		if err == nil {
			err = config.Validate(r)
			if info, ok := config.LookupKind(string(r.Kind)); ok && config.IsIstioKind(r.APIVersion, string(r.Kind)) {
				reason := ""
				if err != nil {
					reason = "invalid_resource"
				}
				_, version, _ := strings.Cut(r.APIVersion, "/")
				m.Validated(info.Group, version, info.Plural, reason)
			}
		}
		if err == nil {
			// What the proxies could not enforce is refused here, not
			// found out when a proxy's build fails.
			err = xds.CheckAuthorizationPolicy(r)
		}
		if err == nil {
			// istiod would not load a bad mesh config: refuse it here.
			err = meshconfig.Check(r)
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: document %d: %v", d.Source, d.Index+1, err))
			continue
		}
		out = append(out, r)
	}
	return out, errs
}

func (s *Server) handleApply(w http.ResponseWriter, r *http.Request) {
	var req api.ApplyRequest
	if !decode(w, r, &req) {
		return
	}
	rs, errs := resources(req.Documents, s.metrics)
	if len(errs) > 0 {
		writeError(w, http.StatusUnprocessableEntity, "nothing was applied: the batch has invalid documents", errs...)
		return
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if errs := s.checkTelemetryProviders(req.Documents, rs); len(errs) > 0 {
		writeError(w, http.StatusUnprocessableEntity, "nothing was applied: the batch has invalid documents", errs...)
		return
	}
	if s.kube == nil {
		if errs := s.admitWorkloads(req.Documents, rs); len(errs) > 0 {
			writeError(w, http.StatusUnprocessableEntity, "nothing was applied: the batch has invalid documents", errs...)
			return
		}
	}
	if req.DryRun {
		res := api.Result{Revision: s.store.Revision()}
		for _, x := range rs {
			if err := s.precondition(x); err != nil {
				writeApplyError(w, err)
				return
			}
			res.Changes = append(res.Changes, api.Change{Key: x.Key(), Op: "validated"})
		}
		writeJSON(w, http.StatusOK, res)
		return
	}
	res, err := s.store.Apply(r.Context(), rs)
	if err != nil {
		writeApplyError(w, err)
		return
	}
	if err := s.workloadsChanged(); err != nil {
		// Stored, but the registry lags: say so rather than pretend.
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("applied at revision %d, but: %v", res.Rev, err))
		return
	}
	out := apiResult(res)
	writeJSON(w, http.StatusOK, out)
}

// checkTelemetryProviders refuses Telemetry resources naming providers
// the mesh config (the batch's istio ConfigMap, else the stored one)
// does not define (meshconfig.CheckTelemetry). docs and rs are one to
// one: resources returned no error.
func (s *Server) checkTelemetryProviders(docs []api.Document, rs []config.Resource) []string {
	mesh, err := meshconfig.Find(rs)
	if err == nil && mesh == nil {
		if cm, ok, gerr := s.store.Get(config.ConfigMap, meshconfig.Namespace, meshconfig.ConfigMapName); gerr != nil {
			err = gerr
		} else if ok {
			mesh, err = meshconfig.FromResource(cm)
		}
	}
	if err != nil {
		return []string{fmt.Sprintf("read the mesh config to check Telemetry providers: %v", err)}
	}
	var errs []string
	for i, r := range rs {
		if err := meshconfig.CheckTelemetry(r, mesh); err != nil {
			errs = append(errs, fmt.Sprintf("%s: document %d: %v", docs[i].Source, docs[i].Index+1, err))
		}
	}
	return errs
}

// writeApplyError answers a failed apply: 409 for a stale resourceVersion,
// as the Kubernetes API does, else 500.
func writeApplyError(w http.ResponseWriter, err error) {
	var conflict *store.ConflictError
	if errors.As(err, &conflict) {
		writeError(w, http.StatusConflict, "nothing was applied: "+conflict.Error())
		return
	}
	writeError(w, http.StatusInternalServerError, "nothing was applied: "+err.Error())
}

// precondition is the store's resourceVersion check, for a dry run.
func (s *Server) precondition(r config.Resource) error {
	if r.Revision == 0 {
		return nil
	}
	old, found, err := s.store.Get(r.Kind, r.Namespace, r.Name)
	switch {
	case err != nil:
		return err
	case !found:
		return &store.ConflictError{Key: r.Key(), Want: r.Revision}
	case old.Revision != r.Revision:
		return &store.ConflictError{Key: r.Key(), Want: r.Revision, Have: old.Revision}
	}
	return nil
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	var req api.DeleteRequest
	if !decode(w, r, &req) {
		return
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	keys, err := s.expandNamespaceDeletes(req.Keys)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "nothing was deleted: "+err.Error())
		return
	}
	res, err := s.store.Delete(r.Context(), keys)
	if err != nil {
		writeError(w, http.StatusNotFound, "nothing was deleted: "+err.Error())
		return
	}
	if err := s.workloadsChanged(); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("deleted at revision %d, but: %v", res.Rev, err))
		return
	}
	writeJSON(w, http.StatusOK, apiResult(res))
}

func (s *Server) handleResources(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kinds := config.Kinds
	if k := q.Get("kind"); k != "" && k != "all" {
		info, ok := config.LookupStoredKind(k)
		if !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown resource kind %q; meshlab knows %s", k, kindNames()))
			return
		}
		kinds = []config.KindInfo{info}
	}
	list := api.ResourceList{Revision: s.store.Revision(), Items: []json.RawMessage{}}
	for _, k := range kinds {
		rs, err := s.store.List(k.Kind, q.Get("namespace"))
		if err != nil {
			writeError(w, http.StatusInternalServerError, "list "+string(k.Kind)+": "+err.Error())
			return
		}
		for _, x := range rs {
			if n := q.Get("name"); n != "" && x.Name != n {
				continue
			}
			doc, err := config.Marshal(x)
			if err != nil {
				writeError(w, http.StatusInternalServerError, "encode "+x.Key()+": "+err.Error())
				return
			}
			b, _ := json.Marshal(doc)
			list.Items = append(list.Items, b)
		}
	}
	if n := q.Get("name"); n != "" && len(list.Items) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %q not found in namespace %q", q.Get("kind"), n, q.Get("namespace")))
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func kindNames() string {
	var n []string
	for _, k := range append(append([]config.KindInfo(nil), config.Kinds...), config.WorkloadKinds...) {
		n = append(n, k.Plural)
	}
	return strings.Join(n, ", ")
}

func (s *Server) proxies() []api.ProxyStatus {
	var out []api.ProxyStatus
	for _, p := range s.xds.Status() {
		ps := api.ProxyStatus{ID: p.ID, Type: p.Type, Pod: p.Pod, Namespace: p.Namespace, IP: p.IP,
			Connected: p.Connected, Identity: p.Identity, Types: map[string]api.TypeStatus{}}
		for url, t := range p.PerType {
			ps.Types[shortType(url)] = api.TypeStatus{Sent: t.Sent, Acked: t.Acked, Nacked: t.Nacked, Error: t.Error, State: t.State}
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func shortType(url string) string {
	switch {
	case strings.HasSuffix(url, ".Cluster"):
		return "CDS"
	case strings.HasSuffix(url, ".Listener"):
		return "LDS"
	case strings.HasSuffix(url, ".RouteConfiguration"):
		return "RDS"
	case strings.HasSuffix(url, ".ClusterLoadAssignment"):
		return "EDS"
	case strings.HasSuffix(url, ".Secret"):
		return "SDS"
	}
	return url
}

func (s *Server) handleProxies(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.proxies())
}

func (s *Server) handleConfigDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxy")
	for _, p := range s.proxies() {
		if p.ID == id || p.Pod+"."+p.Namespace == id {
			id = p.ID
			break
		}
	}
	dump, err := s.xds.ConfigDump(id)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(dump)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode config dump: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b) // a failed write means the client is gone
}

func (s *Server) handlePutService(w http.ResponseWriter, r *http.Request) {
	var svc registry.Service
	if !decode(w, r, &svc) {
		return
	}
	if svc.Name == "" || svc.Namespace == "" {
		writeError(w, http.StatusBadRequest, "service needs a name and a namespace")
		return
	}
	if !svc.VIP.IsValid() {
		vip, err := s.store.AllocateVIP(svc.Key(), s.opts.VIPPool)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "allocate a VIP for "+svc.Key()+": "+err.Error())
			return
		}
		svc.VIP = vip
	}
	if err := s.persist(bucketServices, svc.Key(), svc); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.reg.PutService(svc)
	s.metrics.Inbound(monitoring.InboundService)
	writeJSON(w, http.StatusOK, svc)
}

func (s *Server) handlePutWorkload(w http.ResponseWriter, r *http.Request) {
	var wl registry.Workload
	if !decode(w, r, &wl) {
		return
	}
	if wl.Name == "" || wl.Namespace == "" || !wl.IP.IsValid() {
		writeError(w, http.StatusBadRequest, "workload needs a name, a namespace and an IP")
		return
	}
	if err := s.persist(bucketWorkloads, wl.Key(), wl); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.reg.PutWorkload(wl)
	s.metrics.Inbound(monitoring.InboundEDS)
	writeJSON(w, http.StatusOK, wl)
}

// handleDeleteWorkload deletes one workload, or with no name every one: a
// runtime starting afresh says so, and the pods of an earlier lab (kept in
// the store across a control plane restart) stop being endpoints.
func (s *Server) handleDeleteWorkload(w http.ResponseWriter, r *http.Request) {
	ns, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("name")
	var gone []registry.Workload
	if name == "" {
		gone = s.reg.Snapshot().Workloads
	} else {
		gone = []registry.Workload{{Namespace: ns, Name: name}}
	}
	for _, wl := range gone {
		if err := s.persist(bucketWorkloads, wl.Key(), nil); err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		s.reg.DeleteWorkload(wl.Namespace, wl.Name)
		s.metrics.Inbound(monitoring.InboundEDS)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRegistry(w http.ResponseWriter, r *http.Request) {
	snap := s.reg.Snapshot()
	writeJSON(w, http.StatusOK, api.Registry{Services: snap.Services, Workloads: snap.Workloads})
}

// handleWait answers once every proxy the change to the asked store
// revision concerns (those whose configuration it changed) has ACKed it.
// Otherwise it names them: 409 at once for a NACK or a configuration the
// control plane could not send, 504 for those still silent at the
// deadline. Proxies the change left alone are not waited for.
func (s *Server) handleWait(w http.ResponseWriter, r *http.Request) {
	want, err := strconv.ParseUint(r.URL.Query().Get("revision"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "revision: want a number: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 25*time.Second)
	defer cancel()
	err = s.xds.WaitAcked(ctx, func(v string) bool { return v != "" && revOf(v) >= want })
	var se *xds.SyncError
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.As(err, &se) && len(se.Failed) > 0:
		writeError(w, http.StatusConflict, fmt.Sprintf("revision %d was rejected by %d proxies or could not be sent to them", want, len(se.Failed)), se.Failed...)
	case errors.As(err, &se) && len(se.Pending) > 0:
		writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("%d proxies did not ACK revision %d in time", len(se.Pending), want), se.Pending...)
	case ctx.Err() != nil:
		writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("revision %d was not pushed in time: %v", want, err))
	default:
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("wait for revision %d: %v", want, err))
	}
}

// revOf reads the store revision out of a snapshot version "<rev>.<gen>".
func revOf(version string) uint64 {
	head, _, _ := strings.Cut(version, ".")
	n, _ := strconv.ParseUint(head, 10, 64)
	return n
}

const (
	bucketServices  = "registry.services"
	bucketWorkloads = "registry.workloads"
)

// persist keeps the registry in the store so a restarted control plane
// serves the same services and endpoints before the runtime says anything.
// A nil value deletes the key.
func (s *Server) persist(bucket, key string, v any) error {
	var b []byte
	if v != nil {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return fmt.Errorf("encode %s %s: %w", bucket, key, err)
		}
	}
	if err := s.store.PutMeta(bucket, key, b); err != nil {
		return fmt.Errorf("persist %s %s: %w", bucket, key, err)
	}
	return nil
}

func (s *Server) loadRegistry() error {
	svcs, err := s.store.ListMeta(bucketServices)
	if err != nil {
		return fmt.Errorf("load registry: %w", err)
	}
	for k, b := range svcs {
		var svc registry.Service
		if err := json.Unmarshal(b, &svc); err != nil {
			return fmt.Errorf("load registry service %s: %w", k, err)
		}
		s.reg.PutService(svc)
	}
	wls, err := s.store.ListMeta(bucketWorkloads)
	if err != nil {
		return fmt.Errorf("load registry: %w", err)
	}
	for k, b := range wls {
		var wl registry.Workload
		if err := json.Unmarshal(b, &wl); err != nil {
			return fmt.Errorf("load registry workload %s: %w", k, err)
		}
		s.reg.PutWorkload(wl)
	}
	return nil
}

func apiResult(r store.ApplyResult) api.Result {
	res := api.Result{Revision: r.Rev}
	for _, c := range r.Changes {
		res.Changes = append(res.Changes, api.Change{Key: c.Key, Op: string(c.Op)})
	}
	return res
}
