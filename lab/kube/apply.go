package kube

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/lab"
)

// object is one document of a batch on its way to the API server.
type object struct {
	doc     lab.Document
	u       *unstructured.Unstructured
	mapping *meta.RESTMapping
}

func (o *object) namespaced() bool { return o.mapping.Scope.Name() == meta.RESTScopeNameNamespace }

func (o *object) ref() lab.ObjectRef {
	gvk := o.u.GroupVersionKind()
	return lab.ObjectRef{Group: gvk.Group, Kind: gvk.Kind, Namespace: o.u.GetNamespace(), Name: o.u.GetName()}
}

// fail is an error about this document, as config.Error writes it:
// `app.yaml: document 3 (Deployment foo/web): spec.replicas: ...`.
func (o *object) fail(field, msg string) *config.Error {
	return &config.Error{File: o.doc.Source, Doc: o.doc.Index, Kind: o.u.GetKind(),
		Namespace: o.u.GetNamespace(), Name: o.u.GetName(), Field: field, Msg: msg}
}

// defaultNamespace is where objects of a namespaced kind go when neither
// the document nor the request names a namespace, as with kubectl.
const defaultNamespace = "default"

// Apply applies a batch all or nothing. Every document is first sent with
// dryRun=All (validated, defaulted and admitted, never stored), and every
// error is collected with the file, document and field it is about; only
// when all pass are they applied for real, by server-side apply (field
// manager "meshlab", conflicts forced, as `kubectl apply --server-side
// --force-conflicts`), in file order with the Namespaces first. An error
// in that second pass (the cluster changed in between) stops the batch; the
// result then lists what was applied before it.
func (r *Runtime) Apply(ctx context.Context, req lab.ApplyRequest) (lab.ApplyResult, error) {
	c, err := r.clients()
	if err != nil {
		return lab.ApplyResult{}, err
	}
	objs, errs := c.resolve(ctx, req.Documents, req.Namespace)
	// Namespaces first, so that what goes in them finds them; otherwise
	// file order.
	sort.SliceStable(objs, func(i, j int) bool {
		return objs[i].u.GetKind() == "Namespace" && objs[i].u.GroupVersionKind().Group == "" &&
			(objs[j].u.GetKind() != "Namespace" || objs[j].u.GroupVersionKind().Group != "")
	})
	// A namespace this batch creates does not exist during the dry run,
	// and the API server refuses objects in a namespace that does not
	// exist; those are checked in a namespace that does (see
	// scratchNamespace), which validates the same fields.
	created := map[string]bool{}
	for _, o := range objs {
		if o.u.GetKind() == "Namespace" && o.u.GroupVersionKind().Group == "" {
			created[o.u.GetName()] = true
		}
	}
	exists := map[string]bool{}
	for ns := range created {
		_, err := c.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		switch {
		case err == nil:
			exists[ns] = true
		case !apierrors.IsNotFound(err):
			return lab.ApplyResult{}, fmt.Errorf("apply: look up namespace %s: %w", ns, err)
		}
	}

	changes := make([]lab.Change, len(objs))
	// What each object was before, for created/configured/unchanged.
	befores := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		u := o.u
		var before *unstructured.Unstructured
		if o.namespaced() && created[u.GetNamespace()] && !exists[u.GetNamespace()] {
			// The object is new (its namespace is); nothing to compare.
			ns, err := c.scratchNamespace(ctx, o.mapping, u.GetName())
			if err != nil {
				errs = append(errs, o.fail("", err.Error()))
				continue
			}
			u = u.DeepCopy()
			u.SetNamespace(ns)
		} else if before, err = c.get(ctx, o.mapping, u.GetNamespace(), u.GetName()); err != nil {
			errs = append(errs, o.fail("", err.Error()))
			continue
		}
		after, err := c.resource(o.mapping, u.GetNamespace()).Apply(ctx, u.GetName(), u,
			metav1.ApplyOptions{FieldManager: FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			errs = append(errs, apiErrors(o, err)...)
			continue
		}
		befores[i] = before
		changes[i] = lab.Change{Ref: o.ref(), Op: op(before, after, true)}
	}
	if len(errs) > 0 {
		// In document order, whichever check found them.
		pos := map[[2]any]int{}
		for i, d := range req.Documents {
			pos[[2]any{d.Source, d.Index}] = i
		}
		sort.SliceStable(errs, func(i, j int) bool {
			return pos[[2]any{errs[i].File, errs[i].Doc}] < pos[[2]any{errs[j].File, errs[j].Doc}]
		})
		return lab.ApplyResult{}, errs
	}
	if req.DryRun {
		return lab.ApplyResult{Changes: changes}, nil
	}

	res := lab.ApplyResult{}
	for i, o := range objs {
		after, err := c.resource(o.mapping, o.u.GetNamespace()).Apply(ctx, o.u.GetName(), o.u,
			metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if err != nil {
			return res, fmt.Errorf("apply: %w\n(the dry run of the batch passed, so the cluster changed since; %d of %d objects were applied before this one)",
				config.ErrorList(apiErrors(o, err)), len(res.Changes), len(objs))
		}
		res.Changes = append(res.Changes, lab.Change{Ref: o.ref(), Op: op(befores[i], after, false)})
	}
	return res, nil
}

// scratchNamespaces are where an object bound for a namespace still to be
// created is dry-run: namespaces every cluster has.
var scratchNamespaces = []string{defaultNamespace, "kube-public", "kube-node-lease", "kube-system"}

// scratchNamespace is the first of scratchNamespaces without an object of
// this kind and name, so that the dry run creates, as the real apply will,
// rather than merging with an unrelated object (whose immutable fields, a
// Deployment's selector, would fail it).
func (c *clients) scratchNamespace(ctx context.Context, m *meta.RESTMapping, name string) (string, error) {
	for _, ns := range scratchNamespaces {
		u, err := c.get(ctx, m, ns, name)
		if err != nil {
			return "", err
		}
		if u == nil {
			return ns, nil
		}
	}
	return defaultNamespace, nil
}

// op says what an apply did, as kubectl does: created, configured or
// unchanged. A real apply that changes nothing keeps the resourceVersion;
// a dry run never bumps it, so there the objects are compared.
func op(before, after *unstructured.Unstructured, dryRun bool) string {
	switch {
	case before == nil:
		return "created"
	case !dryRun && before.GetResourceVersion() == after.GetResourceVersion():
		return "unchanged"
	case dryRun && sameContent(before, after):
		return "unchanged"
	}
	return "configured"
}

func sameContent(a, b *unstructured.Unstructured) bool {
	strip := func(u *unstructured.Unstructured) map[string]any {
		c := u.DeepCopy()
		c.SetManagedFields(nil)
		c.SetResourceVersion("")
		c.SetGeneration(0)
		return c.Object
	}
	return apiequality.Semantic.DeepEqual(strip(a), strip(b))
}

// resolve decodes the documents and finds each one's resource; what fails
// is an error naming the document.
func (c *clients) resolve(ctx context.Context, docs []lab.Document, defaultNS string) ([]*object, config.ErrorList) {
	if defaultNS == "" {
		defaultNS = defaultNamespace
	}
	var objs []*object
	var errs config.ErrorList
	add := func(o *object) {
		if o.u.GetName() == "" {
			errs = append(errs, o.fail("metadata.name", "Required value"))
			return
		}
		gvk := o.u.GroupVersionKind()
		m, err := c.mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
		if err != nil {
			if meta.IsNoMatchError(err) {
				errs = append(errs, o.fail("", fmt.Sprintf("kind %s (%s) is not served by this cluster; is its CRD installed?", gvk.Kind, o.u.GetAPIVersion())))
			} else {
				errs = append(errs, o.fail("", err.Error()))
			}
			return
		}
		o.mapping = m
		if o.namespaced() {
			if o.u.GetNamespace() == "" {
				o.u.SetNamespace(defaultNS)
			}
		} else {
			// kubectl ignores a namespace on a cluster-scoped object; the
			// API server would refuse it.
			o.u.SetNamespace("")
		}
		objs = append(objs, o)
	}
	for _, d := range docs {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(d.JSON); err != nil {
			errs = append(errs, &config.Error{File: d.Source, Doc: d.Index, Msg: "want a Kubernetes object with apiVersion, kind and metadata.name: " + err.Error()})
			continue
		}
		// A List (kubectl get -o yaml writes them) is its items, each
		// still known by the document it is in.
		if !u.IsList() {
			add(&object{doc: d, u: u})
			continue
		}
		l, err := u.ToList()
		if err != nil {
			errs = append(errs, &config.Error{File: d.Source, Doc: d.Index, Kind: u.GetKind(), Msg: err.Error()})
			continue
		}
		for i := range l.Items {
			add(&object{doc: d, u: &l.Items[i]})
		}
	}
	return objs, errs
}

func (c *clients) resource(m *meta.RESTMapping, ns string) dynamic.ResourceInterface {
	r := c.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return r.Namespace(ns)
	}
	return r
}

// get returns the object, or nil when there is none.
func (c *clients) get(ctx context.Context, m *meta.RESTMapping, ns, name string) (*unstructured.Unstructured, error) {
	u, err := c.resource(m, ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return u, err
}

// typedPatch is how server-side apply reports a document that does not fit
// the schema (an unknown field, a string for a number): as a message, not
// StatusCauses, with structured-merge-diff's paths, one error a line.
var typedPatch = regexp.MustCompile(`failed to create typed patch object \([^)]*\): (?:errors:\n)?`)

// typedPatchErrors are the errors of such a message, paths written as
// Kubernetes writes them (list items by index).
func typedPatchErrors(o *object, msg string) config.ErrorList {
	loc := typedPatch.FindStringIndex(msg)
	if loc == nil {
		return nil
	}
	var out config.ErrorList
	for _, line := range strings.Split(msg[loc[1]:], "\n") {
		path, what, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok || !strings.HasPrefix(path, ".") {
			continue
		}
		field := indexPath(o.u.Object, path)
		if what == "field not declared in schema" {
			last := field[strings.LastIndexAny(field, ".]")+1:]
			what = fmt.Sprintf("unknown field %q", last)
		}
		out = append(out, o.fail(field, what))
	}
	return out
}

// indexPath rewrites a structured-merge-diff path of obj, whose list items
// are named by their keys (.spec.ports[port=8000,protocol="TCP"].name),
// with indexes (spec.ports[0].name). What it cannot follow is kept.
func indexPath(obj map[string]any, path string) string {
	var b strings.Builder
	var cur any = obj
	for rest := path; rest != ""; {
		switch rest[0] {
		case '.':
			end := strings.IndexAny(rest[1:], ".[")
			if end < 0 {
				end = len(rest) - 1
			}
			name := rest[1 : end+1]
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(name)
			m, _ := cur.(map[string]any)
			cur = m[name]
			rest = rest[end+1:]
		case '[':
			end := closing(rest)
			if end < 0 {
				b.WriteString(rest)
				return b.String()
			}
			sel := rest[1:end]
			rest = rest[end+1:]
			list, _ := cur.([]any)
			i := matchItem(list, sel)
			if i < 0 {
				b.WriteString("[" + sel + "]")
				cur = nil
				continue
			}
			fmt.Fprintf(&b, "[%d]", i)
			cur = list[i]
		default:
			b.WriteString(rest)
			return b.String()
		}
	}
	return b.String()
}

// closing is the index of the ] that closes the [ at s[0], skipping
// quoted values.
func closing(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch {
		case quoted && s[i] == '\\':
			i++
		case s[i] == '"':
			quoted = !quoted
		case !quoted && s[i] == ']':
			return i
		}
	}
	return -1
}

// matchItem finds the item a selector names: an index (0), a set value
// (="a"), or key values (port=8000,protocol="TCP").
func matchItem(list []any, sel string) int {
	if i, err := strconv.Atoi(sel); err == nil {
		if i >= 0 && i < len(list) {
			return i
		}
		return -1
	}
	if v, ok := strings.CutPrefix(sel, "="); ok {
		var want any
		if json.Unmarshal([]byte(v), &want) != nil {
			return -1
		}
		for i, it := range list {
			if apiequality.Semantic.DeepEqual(it, want) {
				return i
			}
		}
		return -1
	}
	// "k=v,k2=v2" with JSON values: read it as a JSON object.
	var keys map[string]any
	var js strings.Builder
	js.WriteByte('{')
	for i, kv := range splitKeys(sel) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return -1
		}
		if i > 0 {
			js.WriteByte(',')
		}
		fmt.Fprintf(&js, "%q:%s", k, v)
	}
	js.WriteByte('}')
	if json.Unmarshal([]byte(js.String()), &keys) != nil {
		return -1
	}
	for i, it := range list {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		// A key the document leaves out was defaulted by the server
		// (protocol="TCP" of a Service port).
		all := true
		for k, v := range keys {
			mv, present := m[k]
			all = all && (!present || jsonEqual(mv, v))
		}
		if all {
			return i
		}
	}
	return -1
}

// jsonEqual compares a document's value with a key's, numbers by value
// (the document's may be int64, the key's float64).
func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// splitKeys splits k=v,k2=v2 at the commas outside quoted values.
func splitKeys(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case quoted && s[i] == '\\':
			i++
		case s[i] == '"':
			quoted = !quoted
		case !quoted && s[i] == ',':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// apiErrors turns an API error about o into one error per field, from the
// StatusCauses the API server gives (or from its message when it gives
// none).
func apiErrors(o *object, err error) config.ErrorList {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return config.ErrorList{o.fail("", err.Error())}
	}
	st := status.Status()
	var out config.ErrorList
	if st.Details != nil {
		for _, cause := range st.Details.Causes {
			field := strings.TrimPrefix(cause.Field, ".")
			msg := cause.Message
			// CRD validation repeats the field in its message.
			msg = strings.TrimPrefix(msg, field+": ")
			out = append(out, o.fail(field, msg))
		}
	}
	if len(out) > 0 {
		return out
	}
	if out := typedPatchErrors(o, st.Message); len(out) > 0 {
		return out
	}
	if apierrors.IsNotFound(err) && st.Details != nil && st.Details.Kind == "namespaces" {
		return config.ErrorList{o.fail("metadata.namespace", fmt.Sprintf("namespace %s not found; add a Namespace document to the file, or apply into an existing one (-n)", o.u.GetNamespace()))}
	}
	return config.ErrorList{o.fail("", st.Message)}
}

// Delete deletes objects all or nothing: each must exist and pass a dry-run
// delete before any is deleted. Namespaces go last (with what is left in
// them), the rest in the order given.
func (r *Runtime) Delete(ctx context.Context, refs []lab.ObjectRef) (lab.ApplyResult, error) {
	c, err := r.clients()
	if err != nil {
		return lab.ApplyResult{}, err
	}
	type target struct {
		ref     lab.ObjectRef
		mapping *meta.RESTMapping
	}
	var targets []target
	var errs []error
	for _, ref := range refs {
		if k, ok := config.LookupKind(ref.Kind); ok && ref.Group == "" && isIstio(k.Group) {
			ref.Group = k.Group
		}
		m, err := c.mapper.RESTMappingWithContext(ctx, schema.GroupKind{Group: ref.Group, Kind: ref.Kind})
		if err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", describeRef(ref), err))
			continue
		}
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if ref.Namespace == "" {
				ref.Namespace = defaultNamespace
			}
		} else {
			ref.Namespace = ""
		}
		targets = append(targets, target{ref, m})
	}
	sort.SliceStable(targets, func(i, j int) bool {
		return targets[i].ref.Kind != "Namespace" && targets[j].ref.Kind == "Namespace"
	})
	for _, t := range targets {
		err := c.resource(t.mapping, t.ref.Namespace).Delete(ctx, t.ref.Name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case apierrors.IsNotFound(err):
			errs = append(errs, fmt.Errorf("delete %s: not found", describeRef(t.ref)))
		case err != nil:
			errs = append(errs, fmt.Errorf("delete %s: %w", describeRef(t.ref), err))
		}
	}
	if len(errs) > 0 {
		return lab.ApplyResult{}, fmt.Errorf("%w\nnothing was deleted", errors.Join(errs...))
	}
	var res lab.ApplyResult
	bg := metav1.DeletePropagationBackground
	for _, t := range targets {
		err := c.resource(t.mapping, t.ref.Namespace).Delete(ctx, t.ref.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
		// Deleting a Namespace first may have taken this one with it.
		if err != nil && !apierrors.IsNotFound(err) {
			return res, fmt.Errorf("delete %s: %w (%d of %d deleted before it)", describeRef(t.ref), err, len(res.Changes), len(targets))
		}
		res.Changes = append(res.Changes, lab.Change{Ref: t.ref, Op: "deleted"})
	}
	return res, nil
}

func describeRef(r lab.ObjectRef) string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// List returns objects of one kind as the API server serves them (with
// apiVersion and kind). kind is a kind, plural or short name as kubectl
// takes them ("Deployment", "deploy", "virtualservices.networking.istio.io",
// "vs"); "all" is every Istio kind. The Istio names are meshlab's own table
// (controlplane/config), so they mean the same on every runtime; other names
// go through the cluster's discovery. ns "" is every namespace; a name
// that is not there is a NotFound error.
func (r *Runtime) List(ctx context.Context, kind, ns, name string) ([]json.RawMessage, error) {
	c, err := r.clients()
	if err != nil {
		return nil, err
	}
	var gvrs []schema.GroupVersionResource
	if strings.EqualFold(kind, "all") {
		for _, k := range config.Kinds {
			if isIstio(k.Group) {
				gvrs = append(gvrs, schema.GroupVersionResource{Group: k.Group, Resource: k.Plural})
			}
		}
	} else if k, ok := config.LookupKind(kind); ok && isIstio(k.Group) {
		gvrs = append(gvrs, schema.GroupVersionResource{Group: k.Group, Resource: k.Plural})
	} else {
		gvr, gr := schema.ParseResourceArg(strings.ToLower(kind))
		if gvr == nil {
			gvr = &schema.GroupVersionResource{Group: gr.Group, Resource: gr.Resource}
		}
		gvrs = append(gvrs, *gvr)
	}
	var out []json.RawMessage
	for _, partial := range gvrs {
		gvr, err := c.mapper.ResourceForWithContext(ctx, partial)
		if meta.IsNoMatchError(err) && len(gvrs) > 1 {
			continue // "all" on a cluster without this kind's CRD
		}
		if err != nil {
			if meta.IsNoMatchError(err) {
				return nil, fmt.Errorf("get %s: the cluster serves no such kind (is its CRD installed?): %w", kind, err)
			}
			return nil, fmt.Errorf("get %s: %w", kind, err)
		}
		gvk, err := c.mapper.KindForWithContext(ctx, gvr)
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", kind, err)
		}
		m, err := c.mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", kind, err)
		}
		res := c.resource(m, ns)
		if name != "" {
			if m.Scope.Name() == meta.RESTScopeNameNamespace && ns == "" {
				// A name is looked up in one namespace, as kubectl does.
				res = c.resource(m, defaultNamespace)
			}
			u, err := res.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && len(gvrs) > 1 {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("get %s %s: %w", kind, name, err)
			}
			b, err := u.MarshalJSON()
			if err != nil {
				return nil, err
			}
			out = append(out, b)
			continue
		}
		l, err := res.List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("get %s%s: %w", kind, inNS(ns), err)
		}
		items := l.Items
		sort.Slice(items, func(i, j int) bool {
			if items[i].GetNamespace() != items[j].GetNamespace() {
				return items[i].GetNamespace() < items[j].GetNamespace()
			}
			return items[i].GetName() < items[j].GetName()
		})
		for i := range items {
			b, err := items[i].MarshalJSON()
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
	}
	return out, nil
}

func isIstio(group string) bool { return strings.HasSuffix(group, "istio.io") }

// readManifest reads a YAML (or JSON) file of one or more documents into
// the documents Apply takes; empty documents are not counted.
func readManifest(path string) ([]lab.Document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var docs []lab.Document
	dec := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		raw, err := dec.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, len(docs)+1, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: not YAML: %w", path, len(docs)+1, err)
		}
		if string(js) == "null" {
			continue
		}
		docs = append(docs, lab.Document{Source: path, Index: len(docs), JSON: js})
	}
}
