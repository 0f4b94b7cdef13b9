package console

import (
	"net/http"
)

// apiRoutes are the API's paths below the web root (the handler sees them
// with the root stripped). Mutations are registered only for POST, PUT and
// DELETE, so no GET can change anything: the mux answers 405 for any
// other method.
func (s *server) apiRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/auth/info", handle(s.authInfo))
	mux.HandleFunc("POST /api/authenticate", s.authenticate)
	mux.HandleFunc("GET /api/logout", s.logout)
	mux.HandleFunc("POST /api/logout", s.logout)

	mux.HandleFunc("GET /api/status", handle(s.status))
	mux.HandleFunc("GET /api/mesh", handle(s.meshStatus))
	mux.HandleFunc("GET /api/overview", handle(s.overview))
	mux.HandleFunc("GET /api/namespaces", handle(s.listNamespaces))

	mux.HandleFunc("GET /api/namespaces/graph", handle(s.namespacesGraph))
	mux.HandleFunc("GET /api/namespaces/{ns}/health", handle(s.namespaceHealth))
	// Kiali spells apps "applications" in node graph paths and "apps" in
	// lists; both are taken everywhere.
	for _, kind := range []string{"applications", "apps", "workloads", "services"} {
		base, k := "GET /api/namespaces/{ns}/"+kind, entityKindOf(kind)
		with := func(f func(*http.Request, entityKind) (any, error)) http.HandlerFunc {
			return handle(func(r *http.Request) (any, error) { return f(r, k) })
		}
		mux.HandleFunc(base, with(s.listEntities))
		mux.HandleFunc(base+"/{name}", with(s.entityDetails))
		mux.HandleFunc(base+"/{name}/graph", with(s.nodeGraph))
		mux.HandleFunc(base+"/{name}/metrics", with(s.metrics))
		mux.HandleFunc(base+"/{name}/traces", with(s.entityTraces))
	}
	mux.HandleFunc("GET /api/traces/{id}", handle(s.trace))

	mux.HandleFunc("GET /api/namespaces/{ns}/pods/{pod}/config_dump/{what}", handle(s.configDump))
	mux.HandleFunc("GET /api/namespaces/{ns}/pods/{pod}/logs", handle(s.podLogs))

	mux.HandleFunc("GET /api/istio/config", handle(s.istioConfig))
	mux.HandleFunc("GET /api/namespaces/{ns}/istio/{kind}/{name}", handle(s.istioObject))
	mux.HandleFunc("PUT /api/namespaces/{ns}/istio/{kind}/{name}", handle(s.putIstioObject))
	mux.HandleFunc("DELETE /api/namespaces/{ns}/istio/{kind}/{name}", handle(s.deleteIstioObject))

	mux.HandleFunc("POST /api/meshlab/wizard", handle(s.wizardGenerate))
	mux.HandleFunc("POST /api/meshlab/apply", handle(s.apply))
	mux.HandleFunc("DELETE /api/namespaces/{ns}/services/{svc}/wizard", handle(s.wizardDelete))

	return mux
}
