package zipkin

import (
	"slices"

	"github.com/openzipkin/zipkin-go/model"
)

// merge folds the reports of one span into one, as Zipkin's Trace.merge
// does before building a tree: spans are the same when they share id,
// shared flag and local service; a SERVER span reusing its CLIENT's id is a
// shared span even if its reporter did not say so (B3 with
// shared_span_context; Istio's proxies use fresh ids and never hit this).
func merge(spans []*model.SpanModel) []*model.SpanModel {
	type key struct {
		id      model.ID
		shared  bool
		service string
	}
	clientIDs := map[model.ID]bool{}
	for _, s := range spans {
		if s.Kind == model.Client {
			clientIDs[s.ID] = true
		}
	}
	var order []key
	by := map[key]*model.SpanModel{}
	for _, s := range spans {
		shared := s.Shared || (s.Kind == model.Server && clientIDs[s.ID])
		k := key{s.ID, shared, serviceName(s.LocalEndpoint)}
		prev, ok := by[k]
		if !ok {
			c := *s
			c.Shared = shared
			c.Tags = copyTags(s.Tags)
			by[k] = &c
			order = append(order, k)
			continue
		}
		mergeInto(prev, s)
	}
	out := make([]*model.SpanModel, 0, len(order))
	for _, k := range order {
		out = append(out, by[k])
	}
	return out
}

func copyTags(t map[string]string) map[string]string {
	if t == nil {
		return nil
	}
	c := make(map[string]string, len(t))
	for k, v := range t {
		c[k] = v
	}
	return c
}

// mergeInto fills what dst lacks from src and unions tags and annotations.
func mergeInto(dst, src *model.SpanModel) {
	if dst.ParentID == nil {
		dst.ParentID = src.ParentID
	}
	if dst.Name == "" || dst.Name == "unknown" {
		dst.Name = src.Name
	}
	if dst.Kind == model.Undetermined {
		dst.Kind = src.Kind
	}
	if dst.Timestamp.IsZero() || (!src.Timestamp.IsZero() && src.Timestamp.Before(dst.Timestamp)) {
		dst.Timestamp = src.Timestamp
	}
	dst.Duration = max(dst.Duration, src.Duration)
	if dst.LocalEndpoint.Empty() {
		dst.LocalEndpoint = src.LocalEndpoint
	}
	if dst.RemoteEndpoint.Empty() {
		dst.RemoteEndpoint = src.RemoteEndpoint
	}
	dst.Debug = dst.Debug || src.Debug
	for _, a := range src.Annotations {
		if !slices.ContainsFunc(dst.Annotations, func(b model.Annotation) bool {
			return a.Value == b.Value && a.Timestamp.Equal(b.Timestamp)
		}) {
			dst.Annotations = append(dst.Annotations, a)
		}
	}
	for k, v := range src.Tags {
		if dst.Tags == nil {
			dst.Tags = map[string]string{}
		}
		dst.Tags[k] = v
	}
}

// node is Zipkin's SpanNode: a span in a trace's tree; span is nil for the
// synthetic root of a headless trace.
type node struct {
	span     *model.SpanModel
	parent   *node
	children []*node
}

// buildTree is Zipkin's SpanNode.Builder.build on already-merged spans: a
// shared (server) span is the child of the client with its id; other spans
// hang under their parent id, or under the root when the parent is missing.
func buildTree(spans []*model.SpanModel) *node {
	var root *node
	byID := map[model.ID]*node{}       // non-shared spans
	sharedByID := map[model.ID]*node{} // shared server spans
	nodes := make([]*node, len(spans))
	for i, s := range spans {
		n := &node{span: s}
		nodes[i] = n
		if s.Shared {
			sharedByID[s.ID] = n
		} else {
			byID[s.ID] = n
		}
	}
	for i, s := range spans {
		if !s.Shared && s.ParentID == nil && root == nil {
			root = nodes[i]
		}
	}
	if root == nil {
		root = &node{}
	}
	for i, s := range spans {
		n := nodes[i]
		if n == root {
			continue
		}
		var p *node
		switch {
		case s.Shared:
			p = byID[s.ID]
		case s.ParentID != nil:
			// The child of a shared server span on the same host first,
			// as Zipkin tries the most specific key first.
			if sp := sharedByID[*s.ParentID]; sp != nil && serviceName(sp.span.LocalEndpoint) == serviceName(s.LocalEndpoint) {
				p = sp
			} else {
				p = byID[*s.ParentID]
			}
		}
		if p == nil || p == n {
			p = root
		}
		n.parent = p
		p.children = append(p.children, n)
	}
	return root
}

// linker is Zipkin's DependencyLinker.
type linker struct {
	order  []linkKey
	calls  map[linkKey]int64
	errors map[linkKey]int64
}

type linkKey struct{ parent, child string }

func newLinker() *linker {
	return &linker{calls: map[linkKey]int64{}, errors: map[linkKey]int64{}}
}

// putTrace adds the links of one trace's spans (grouped by low trace id, as
// Zipkin does for dependencies so a trace is not counted twice).
func (l *linker) putTrace(spans []*model.SpanModel) {
	if len(spans) == 0 {
		return
	}
	root := buildTree(merge(spans))
	// Breadth-first, from the root-most spans.
	queue := []*node{root}
	if root.span == nil {
		queue = slices.Clone(root.children)
	}
	for len(queue) > 0 {
		cur := queue[0]
		queue = append(queue[1:], cur.children...)
		s := cur.span
		kind := s.Kind
		// A client with children: the server's view of the call is used.
		if kind == model.Client && len(cur.children) > 0 {
			continue
		}
		svc, remote := serviceName(s.LocalEndpoint), serviceName(s.RemoteEndpoint)
		if kind == model.Undetermined {
			if svc == "" || remote == "" {
				continue
			}
			kind = model.Client
		}
		var parent, child string
		switch kind {
		case model.Server, model.Consumer:
			child, parent = svc, remote
			if cur == root && parent == "" {
				continue
			}
		case model.Client, model.Producer:
			parent, child = svc, remote
		default:
			continue
		}
		_, isError := s.Tags["error"]
		if kind == model.Producer || kind == model.Consumer {
			if parent != "" && child != "" {
				l.add(parent, child, isError)
			}
			continue
		}
		if anc := firstRemoteAncestor(cur); anc != nil {
			if name := serviceName(anc.LocalEndpoint); name != "" {
				if kind == model.Client && svc != "" && name != svc {
					l.add(name, svc, false)
				}
				if kind == model.Server || parent == "" {
					parent = name
				}
				if !isError && anc.Kind == model.Client && s.ParentID != nil && *s.ParentID == anc.ID {
					_, isError = anc.Tags["error"]
				}
			}
		}
		if parent == "" || child == "" {
			continue
		}
		l.add(parent, child, isError)
	}
}

func firstRemoteAncestor(n *node) *model.SpanModel {
	for a := n.parent; a != nil; a = a.parent {
		if a.span != nil && a.span.Kind != model.Undetermined {
			return a.span
		}
	}
	return nil
}

func (l *linker) add(parent, child string, isError bool) {
	k := linkKey{parent, child}
	if _, ok := l.calls[k]; !ok {
		l.order = append(l.order, k)
	}
	l.calls[k]++
	if isError {
		l.errors[k]++
	}
}

func (l *linker) links() []DependencyLink {
	out := make([]DependencyLink, 0, len(l.order))
	for _, k := range l.order {
		out = append(out, DependencyLink{Parent: k.parent, Child: k.child, CallCount: l.calls[k], ErrorCount: l.errors[k]})
	}
	return out
}
