package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane/analyze"
	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/console/validation"
	"github.com/meshlab/meshlab/lab/console/wizard"
)

// analyzerMsg is one finding of meshlab's analyzer (IST codes) on an item.
type analyzerMsg struct {
	Code    string `json:"code"`
	Level   string `json:"level"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// itemValidation is Kiali's validation of an object plus the analyzer's
// messages on it.
type itemValidation struct {
	validation.Result
	Analyzer []analyzerMsg `json:"analyzer"`
}

type configItem struct {
	Kind       string            `json:"kind"`
	APIVersion string            `json:"apiVersion"`
	Namespace  string            `json:"namespace"`
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels"`
	YAML       string            `json:"yaml"`
	Validation *itemValidation   `json:"validation,omitempty"`
}

type validationSummary struct {
	Errors      int `json:"errors"`
	Warnings    int `json:"warnings"`
	ObjectCount int `json:"objectCount"`
}

// validations runs Kiali's checks and the analyzer over the whole mesh
// (cross-namespace references need all of it) and returns each object's.
func validations(m *snapshot) map[string]*itemValidation {
	vals := validation.Validate(m.resources, m.services, m.workloads)
	msgs := analyze.Run(analyze.Input{Resources: m.resources, Services: m.services, Workloads: m.workloads, Complete: true})
	out := map[string]*itemValidation{}
	for _, r := range m.resources {
		iv := &itemValidation{Result: validation.Result{ObjectType: strings.ToLower(string(r.Kind)), Name: r.Name,
			Namespace: r.Namespace, Valid: true, Checks: []validation.Check{}}, Analyzer: []analyzerMsg{}}
		if v := vals[r.Key()]; v != nil {
			iv.Result = *v
			if iv.Checks == nil {
				iv.Checks = []validation.Check{}
			}
		}
		out[r.Key()] = iv
	}
	for _, msg := range msgs {
		iv := out[msg.Key()]
		if iv == nil {
			continue
		}
		iv.Analyzer = append(iv.Analyzer, analyzerMsg{Code: msg.Code, Level: msg.Level.String(), Message: msg.Text, Field: msg.Field})
		if msg.Level == analyze.Error {
			iv.Valid = false
		}
	}
	return out
}

// count adds an object's checks to a summary.
func (sum *validationSummary) count(iv *itemValidation) {
	sum.ObjectCount++
	for _, c := range iv.Checks {
		switch c.Severity {
		case "error":
			sum.Errors++
		case "warning":
			sum.Warnings++
		}
	}
	for _, a := range iv.Analyzer {
		switch a.Level {
		case "Error":
			sum.Errors++
		case "Warning":
			sum.Warnings++
		}
	}
}

func toItem(r config.Resource, iv *itemValidation) (configItem, error) {
	obj, err := config.Marshal(r)
	if err != nil {
		return configItem{}, fmt.Errorf("encode %s: %w", r.Key(), err)
	}
	y, err := yaml.Marshal(obj)
	if err != nil {
		return configItem{}, fmt.Errorf("encode %s as YAML: %w", r.Key(), err)
	}
	return configItem{Kind: string(r.Kind), APIVersion: r.APIVersion, Namespace: r.Namespace, Name: r.Name,
		Labels: orEmpty(r.Labels), YAML: string(y), Validation: iv}, nil
}

func (s *server) istioConfig(r *http.Request) (any, error) {
	q := r.URL.Query()
	var nss []string
	if v := q.Get("namespaces"); v != "" {
		nss = strings.Split(v, ",")
	}
	validate := true
	switch v := q.Get("validate"); v {
	case "", "true":
	case "false":
		validate = false
	default:
		return nil, badRequest("validate %q: want true or false", v)
	}
	m, err := s.meshSnapshot(r.Context())
	if err != nil {
		return nil, err
	}
	var vals map[string]*itemValidation
	if validate {
		vals = m.validations()
	}
	items := []configItem{}
	var sum validationSummary
	for _, res := range m.resources {
		if len(nss) > 0 && !contains(nss, res.Namespace) {
			continue
		}
		it, err := toItem(res, vals[res.Key()])
		if err != nil {
			return nil, err
		}
		if it.Validation != nil {
			sum.count(it.Validation)
		}
		items = append(items, it)
	}
	return map[string]any{"items": items, "summary": map[string]int{"errors": sum.Errors, "warnings": sum.Warnings}}, nil
}

// pathObject finds the kind of a path's {kind} (any name kubectl takes).
func pathObject(r *http.Request) (config.KindInfo, string, string, error) {
	k, ns, name := r.PathValue("kind"), r.PathValue("ns"), r.PathValue("name")
	info, ok := config.LookupKind(k)
	if !ok {
		return info, "", "", badRequest("kind %q: not an Istio kind meshlab stores", k)
	}
	return info, ns, name, nil
}

func (s *server) istioObject(r *http.Request) (any, error) {
	info, ns, name, err := pathObject(r)
	if err != nil {
		return nil, err
	}
	m, err := s.meshSnapshot(r.Context())
	if err != nil {
		return nil, err
	}
	key := string(info.Kind) + "/" + ns + "/" + name
	for _, res := range m.resources {
		if res.Key() == key {
			return toItem(res, m.validations()[key])
		}
	}
	return nil, notFound("%s %s/%s not found", info.Kind, ns, name)
}

// readBody reads a request body up to the control plane's limit.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, api.MaxRequestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if len(b) > api.MaxRequestBytes {
		return nil, badRequest("body: larger than %d MiB, the most the control plane takes in one apply", api.MaxRequestBytes>>20)
	}
	return b, nil
}

// applySource names what the console applies in errors, as a file name
// does for `meshlab apply -f`.
const applySource = "console"

func (s *server) putIstioObject(r *http.Request) (any, error) {
	info, ns, name, err := pathObject(r)
	if err != nil {
		return nil, err
	}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	docs, err := api.Documents(applySource, body, ns)
	if err != nil {
		return nil, badRequest("%s", err.Error())
	}
	if len(docs) != 1 {
		return nil, badRequest("body: want one %s document, got %d", info.Kind, len(docs))
	}
	res, err := config.Unmarshal(docs[0].Object)
	if err != nil {
		return nil, badRequest("%s", err.Error())
	}
	if string(res.Kind) != string(info.Kind) || res.Namespace != ns || res.Name != name {
		return nil, badRequest("body: the document is %s, the path names %s/%s/%s; rename it or PUT it at its own path", res.Key(), info.Kind, ns, name)
	}
	return s.applyDocs(r.Context(), docs, ns)
}

type applyAnswer struct {
	Changes  []api.Change `json:"changes"`
	Warnings []string     `json:"warnings"`
}

// applyDocs stores documents through the runtime when there is one (so
// Kubernetes kinds go where `meshlab apply` sends them), else the control
// plane; all or nothing, and a refusal is the same text apply prints.
func (s *server) applyDocs(ctx context.Context, docs []api.Document, ns string) (*applyAnswer, error) {
	defer s.invalidate()
	out := &applyAnswer{Changes: []api.Change{}, Warnings: []string{}}
	if s.o.Runtime != nil {
		ld := make([]lab.Document, len(docs))
		for i, d := range docs {
			ld[i] = lab.Document{Source: d.Source, Index: d.Index, JSON: d.Object}
		}
		res, err := s.o.Runtime.Apply(ctx, lab.ApplyRequest{Documents: ld, Namespace: ns})
		if err != nil {
			return nil, refusal(err)
		}
		for _, c := range res.Changes {
			out.Changes = append(out.Changes, api.Change{Key: c.Ref.Kind + "/" + c.Ref.Namespace + "/" + c.Ref.Name, Op: c.Op})
		}
		out.Warnings = append(out.Warnings, res.Warnings...)
		return out, nil
	}
	res, err := s.cp.Apply(ctx, api.ApplyRequest{Documents: docs})
	if err != nil {
		return nil, refusal(err)
	}
	out.Changes = append(out.Changes, res.Changes...)
	out.Warnings = append(out.Warnings, res.Warnings...)
	return out, nil
}

// refusal is a failed apply or delete as the API answers it: 400 with the
// text unless the control plane could not be reached at all.
func refusal(err error) error {
	var ce *api.APIError
	if errors.Is(err, api.ErrUnreachable) || (errors.As(err, &ce) && ce.Status/100 == 5) {
		return err
	}
	if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
		return &apiError{http.StatusNotFound, err.Error()}
	}
	return &apiError{http.StatusBadRequest, err.Error()}
}

func (s *server) deleteIstioObject(r *http.Request) (any, error) {
	info, ns, name, err := pathObject(r)
	if err != nil {
		return nil, err
	}
	return s.deleteKeys(r.Context(), []string{string(info.Kind) + "/" + ns + "/" + name})
}

// deleteKeys removes objects by key, all or nothing.
func (s *server) deleteKeys(ctx context.Context, keys []string) (*applyAnswer, error) {
	defer s.invalidate()
	out := &applyAnswer{Changes: []api.Change{}, Warnings: []string{}}
	if s.o.Runtime != nil {
		refs := make([]lab.ObjectRef, len(keys))
		for i, k := range keys {
			refs[i] = lab.RefOfKey(k)
		}
		res, err := s.o.Runtime.Delete(ctx, refs)
		if err != nil {
			return nil, refusal(err)
		}
		for _, c := range res.Changes {
			out.Changes = append(out.Changes, api.Change{Key: c.Ref.Kind + "/" + c.Ref.Namespace + "/" + c.Ref.Name, Op: c.Op})
		}
		out.Warnings = append(out.Warnings, res.Warnings...)
		return out, nil
	}
	res, err := s.cp.Delete(ctx, keys)
	if err != nil {
		return nil, refusal(err)
	}
	out.Changes = append(out.Changes, res.Changes...)
	out.Warnings = append(out.Warnings, res.Warnings...)
	return out, nil
}

func (s *server) apply(r *http.Request) (any, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	var in struct {
		YAML      string `json:"yaml"`
		Namespace string `json:"namespace"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("body: want JSON {\"yaml\": \"...\"}: %v", err)
	}
	if strings.TrimSpace(in.YAML) == "" {
		return nil, badRequest("yaml: empty; want the documents to apply")
	}
	docs, err := api.Documents(applySource, []byte(in.YAML), in.Namespace)
	if err != nil {
		return nil, badRequest("%s", err.Error())
	}
	if len(docs) == 0 {
		return nil, badRequest("yaml: no documents")
	}
	return s.applyDocs(r.Context(), docs, in.Namespace)
}

func decodeJSONBody(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("body: %v", err)
	}
	return nil
}

type objectRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (s *server) wizardGenerate(r *http.Request) (any, error) {
	var req wizard.Request
	if err := decodeJSONBody(r, &req); err != nil {
		return nil, err
	}
	objs, err := wizard.Generate(req)
	if err != nil {
		return nil, badRequest("%s", err.Error())
	}
	y, err := wizard.YAML(objs)
	if err != nil {
		return nil, fmt.Errorf("write the wizard's YAML: %w", err)
	}
	refs := []objectRef{}
	for _, o := range objs {
		refs = append(refs, objectRef{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name})
	}
	return map[string]any{"yaml": string(y), "objects": refs}, nil
}

// wizardDelete removes what Kiali's wizards made for a service: the
// kiali_wizard-labelled VirtualServices and DestinationRules named for it
// or for its host, and the Gateway (<svc>-gateway) and PeerAuthentication
// (<svc>) they made, in one batch.
func (s *server) wizardDelete(r *http.Request) (any, error) {
	ns, svc := r.PathValue("ns"), r.PathValue("svc")
	m, err := s.meshSnapshot(r.Context())
	if err != nil {
		return nil, err
	}
	host := svc + "." + ns + ".svc." + "cluster.local"
	var keys []string
	for _, res := range m.resources {
		if res.Namespace != ns {
			continue
		}
		if _, ok := res.Labels[wizard.Label]; !ok {
			continue
		}
		mine := false
		switch sp := res.Spec.(type) {
		case *networking.Gateway:
			mine = res.Name == svc+"-gateway"
		case *security.PeerAuthentication:
			mine = res.Name == svc
		case *networking.VirtualService:
			mine = res.Name == svc
			for _, h := range sp.GetHosts() {
				mine = mine || registry.FQDN(h, ns) == host
			}
		case *networking.DestinationRule:
			mine = res.Name == svc || registry.FQDN(sp.GetHost(), ns) == host
		}
		if mine {
			keys = append(keys, res.Key())
		}
	}
	if len(keys) == 0 {
		return nil, notFound("service %s/%s has no objects labelled %s", ns, svc, wizard.Label)
	}
	sort.Strings(keys)
	return s.deleteKeys(r.Context(), keys)
}
