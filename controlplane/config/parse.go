package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v2"
	"google.golang.org/protobuf/encoding/protojson"
)

// Parse reads every document of one input (YAML with --- separators, a JSON
// object or a stream or array of them, or a kind: List) into resources. It
// reports every problem of every document as an ErrorList and returns no
// resources when any document is bad, so an apply is all or nothing.
// Documents that are empty or only comments are skipped and not counted.
func Parse(file string, data []byte) ([]Resource, error) {
	return ParseInNamespace(file, data, "")
}

// ParseInNamespace is Parse with documents that name no namespace put in
// namespace (as kubectl apply -n does); "" means "default".
func ParseInNamespace(file string, data []byte, namespace string) ([]Resource, error) {
	if namespace == "" {
		namespace = "default"
	}
	docs, err := documents(data)
	if err != nil {
		return nil, ErrorList{{File: file, Msg: err.Error()}}
	}
	var out []Resource
	var errs ErrorList
	for i, d := range docs {
		if d.err != nil {
			errs = append(errs, &Error{File: file, Doc: i, Msg: d.err.Error()})
			continue
		}
		r, derrs := decode(d.obj, namespace)
		if len(derrs) == 0 {
			derrs = validate(r)
		}
		if len(derrs) > 0 {
			derrs.at(file, i)
			errs = append(errs, derrs...)
			continue
		}
		out = append(out, r)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// Document is one object of an input as JSON, for callers that split a
// file and send its documents elsewhere (the CLI sends Istio documents to the
// control plane and Kubernetes ones to the runtime). Index counts documents
// the same way Parse's errors do.
type Document struct {
	Index      int
	APIVersion string
	Kind       string
	JSON       []byte
}

// Split breaks an input into its documents, expanding kind: List, without
// checking them against any schema.
func Split(data []byte) ([]Document, error) {
	docs, err := documents(data)
	if err != nil {
		return nil, err
	}
	out := make([]Document, 0, len(docs))
	for i, d := range docs {
		if d.err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, d.err)
		}
		b, err := json.Marshal(d.obj)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		av, _ := d.obj["apiVersion"].(string)
		k, _ := d.obj["kind"].(string)
		out = append(out, Document{Index: i, APIVersion: av, Kind: k, JSON: b})
	}
	return out, nil
}

// Unmarshal is the inverse of Marshal: one Kubernetes-shaped JSON document to
// a resource, checked against the schema exactly as Parse checks it (but not
// validated; call Validate). metadata.resourceVersion becomes Revision.
func Unmarshal(doc []byte) (Resource, error) {
	v, err := decodeJSON(doc)
	if err != nil {
		return Resource{}, ErrorList{{Msg: "invalid JSON: " + err.Error()}}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return Resource{}, ErrorList{{Msg: "expected an object, got " + describe(v)}}
	}
	r, errs := decode(obj, "default")
	return r, errs.err()
}

// IsIstioKind reports whether a document with this apiVersion and kind is
// Istio configuration (any *.istio.io API group), which is meshlab's to
// parse, as opposed to a Kubernetes object for the runtime. Istio kinds
// meshlab does not support are still Istio's: Parse rejects them with a
// message that says so.
func IsIstioKind(apiVersion, kind string) bool {
	group, _, ok := strings.Cut(apiVersion, "/")
	return ok && kind != "" && (group == "istio.io" || strings.HasSuffix(group, ".istio.io"))
}

// LookupKind finds a kind by any name kubectl would take for it: the kind,
// its plural, its lowercase singular, a short name, or any of those
// qualified by the group ("virtualservices.networking.istio.io"); case is
// ignored.
func LookupKind(name string) (KindInfo, bool) {
	return lookupIn(Kinds, name)
}

func lookupIn(kinds []KindInfo, name string) (KindInfo, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, k := range kinds {
		if g := "." + k.Group; strings.HasSuffix(n, g) {
			if m := strings.TrimSuffix(n, g); m == strings.ToLower(string(k.Kind)) || m == k.Plural {
				return k, true
			}
		}
		if n == strings.ToLower(string(k.Kind)) || n == k.Plural {
			return k, true
		}
		for _, s := range k.Short {
			if n == s {
				return k, true
			}
		}
	}
	return KindInfo{}, false
}

type document struct {
	obj map[string]any
	err error
}

// documents splits an input into objects, expanding lists. A document that
// is not an object is kept as an error so that numbering stays stable.
func documents(data []byte) ([]document, error) {
	var raw []any
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.UseNumber()
		for {
			if err := checkDocumentSize(valueSize(trimmed[dec.InputOffset():])); err != nil {
				raw = append(raw, err)
				break
			}
			var v any
			if err := dec.Decode(&v); err == io.EOF {
				break
			} else if err != nil {
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
			if list, ok := v.([]any); ok {
				raw = append(raw, list...)
			} else {
				raw = append(raw, v)
			}
		}
	} else {
		for _, chunk := range splitYAML(data) {
			if err := checkDocumentSize(len(chunk)); err != nil {
				raw = append(raw, err)
				continue
			}
			v, err := decodeYAML(chunk)
			if err != nil {
				raw = append(raw, fmt.Errorf("invalid YAML: %w", err))
				continue
			}
			if v == nil {
				continue // empty or only comments
			}
			raw = append(raw, v)
		}
	}
	var out []document
	for _, v := range raw {
		out = append(out, expand(v)...)
	}
	return out, nil
}

func expand(v any) []document {
	switch x := v.(type) {
	case error:
		return []document{{err: x}}
	case map[string]any:
		if k, _ := x["kind"].(string); k == "List" || strings.HasSuffix(k, "List") && x["items"] != nil {
			items, ok := x["items"].([]any)
			if !ok {
				return []document{{err: fmt.Errorf("kind %s: items: expected a list, got %s", k, describe(x["items"]))}}
			}
			var out []document
			for _, it := range items {
				out = append(out, expand(it)...)
			}
			return out
		}
		return []document{{obj: x}}
	default:
		return []document{{err: fmt.Errorf("expected an object with apiVersion, kind, metadata and spec, got %s", describe(v))}}
	}
}

// Size limits, Kubernetes': Istio's configuration lives in its API
// server, so no Istio mesh holds a resource over them, and refusing them
// before decoding keeps a huge apply from costing gigabytes.
const (
	// MaxDocumentBytes is the largest document read: kube-apiserver's
	// limit on one request body (3 MiB).
	MaxDocumentBytes = 3 << 20
	// MaxSpecBytes bounds a resource's spec, encoded: etcd's default
	// request limit (1.5 MiB), which every object the API server stores
	// must fit in.
	MaxSpecBytes = 3 << 19
)

func checkDocumentSize(n int) error {
	if n > MaxDocumentBytes {
		return fmt.Errorf("document is %.1f MiB, over the %d MiB the Kubernetes API server accepts in one request; split it into several resources", float64(n)/(1<<20), MaxDocumentBytes>>20)
	}
	return nil
}

// valueSize is the length of the JSON value at the start of b (after
// white space), found by scanning bytes, not decoding, so an oversized one
// is refused before it costs memory. It stops counting past
// MaxDocumentBytes; for invalid JSON it measures something, and decoding
// reports the error.
func valueSize(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	depth, inString := 0, false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
				if depth == 0 {
					return i + 1
				}
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth <= 0 {
				return i + 1
			}
		case depth == 0 && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return i // the end of a number or literal
		}
		if i > MaxDocumentBytes {
			return i
		}
	}
	return i
}

// splitYAML splits a YAML stream at "---" lines (a line that is "---",
// alone or followed by white space), returning parts of data: a document
// is not copied, as a large apply holds it only once.
func splitYAML(data []byte) [][]byte {
	var out [][]byte
	start := 0
	for pos := 0; pos < len(data); {
		end := len(data)
		if i := bytes.IndexByte(data[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		if isDocSeparator(bytes.TrimRight(data[pos:end], "\r\n")) {
			out = append(out, data[start:pos])
			start = end
		}
		pos = end
	}
	return append(out, data[start:])
}

// isDocSeparator matches ^---(\s.*)?$ as RE2 reads \s: tab, newline,
// form feed, carriage return or space.
func isDocSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	if len(line) == 3 {
		return true
	}
	switch line[3] {
	case ' ', '\t', '\n', '\f', '\r':
		return true
	}
	return false
}

// decodeYAML reads one YAML document into the values encoding/json gives
// with UseNumber (map[string]any, []any, string, json.Number, bool, nil):
// what sigs.k8s.io/yaml.YAMLToJSON and decoding its JSON would give, and
// with the same YAML library, without writing and reading the JSON.
func decodeYAML(doc []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	return jsonValue(v)
}

// validUTF8 is s as encoding/json writes it: each byte that is not
// part of valid UTF-8 becomes U+FFFD (a !!binary value can hold any).
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// errKeyCollision: two keys of one YAML mapping spell the same JSON key.
var errKeyCollision = errors.New("duplicate key once keys are strings")

// jsonValue converts what yaml.v2 decodes into JSON's value space, as
// sigs.k8s.io/yaml's convertToJSONableObject and encoding/json do: map keys
// become strings (numbers and booleans spelled out), numbers json.Number,
// and a NaN or infinity is an error, as JSON has none.
func jsonValue(v any) (any, error) {
	switch x := v.(type) {
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			var key string
			switch k := k.(type) {
			case string:
				key = k
			case int:
				key = strconv.Itoa(k)
			case int64:
				key = strconv.FormatInt(k, 10)
			case uint64:
				key = strconv.FormatUint(k, 10)
			case float64:
				key = strconv.FormatFloat(k, 'g', -1, 32)
				switch key {
				case "+Inf":
					key = ".inf"
				case "-Inf":
					key = "-.inf"
				case "NaN":
					key = ".nan"
				}
			case bool:
				key = strconv.FormatBool(k)
			default:
				return nil, fmt.Errorf("unsupported map key of type: %T, key: %+#v, value: %+#v", k, k, e)
			}
			cv, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			key = validUTF8(key)
			if _, dup := out[key]; dup {
				// Two YAML keys that are different values but one JSON key
				// (0 and 0., 1 and "1"): which one wins would depend on map
				// order (sigs.k8s.io/yaml's conversion picks at random), so
				// the document is refused, as Kubernetes' strict decoding
				// refuses duplicate fields.
				return nil, fmt.Errorf("%w: %q", errKeyCollision, key)
			}
			out[key] = cv
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			cv, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = cv
		}
		return out, nil
	case string:
		return validUTF8(x), nil
	case nil, bool:
		return x, nil
	case int:
		return json.Number(strconv.Itoa(x)), nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(x, 10)), nil
	case float64:
		// encoding/json's spelling of a float, and its error for NaN and
		// infinities.
		b, err := json.Marshal(x)
		if err != nil {
			return nil, err
		}
		return json.Number(b), nil
	default:
		return nil, fmt.Errorf("unsupported YAML value of type %T", v)
	}
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("unexpected data after the object")
	}
	return v, nil
}

var (
	topLevelFields = []string{"apiVersion", "kind", "metadata", "spec", "status"}
	metadataFields = []string{"name", "namespace", "labels", "annotations", "resourceVersion",
		"uid", "generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
		"managedFields", "ownerReferences", "finalizers", "generateName", "selfLink"}
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// decode turns one object into a resource, checking it against the kind's
// schema, in defaultNamespace when it names none. metadata.resourceVersion
// is kept as Revision: from the store it says which revision wrote the
// object; in user input it is the revision the user last read, which apply
// holds the stored object to (optimistic concurrency, as Kubernetes).
func decode(obj map[string]any, defaultNamespace string) (Resource, ErrorList) {
	var r Resource
	var errs ErrorList
	fail := func(field, format string, args ...any) {
		errs = append(errs, &Error{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	str := func(field string, v any) string {
		if v == nil {
			return ""
		}
		s, ok := v.(string)
		if !ok {
			fail(field, "expected a string, got %s", describe(v))
		}
		return s
	}

	r.APIVersion = str("apiVersion", obj["apiVersion"])
	r.Kind = Kind(str("kind", obj["kind"]))
	meta, _ := obj["metadata"].(map[string]any)
	if meta != nil {
		r.Name = str("metadata.name", meta["name"])
		r.Namespace = str("metadata.namespace", meta["namespace"])
	}
	if r.Namespace == "" {
		r.Namespace = defaultNamespace
	}
	// Every later error names the resource, as far as it is known.
	defer func() { errs.about(string(r.Kind), r.Namespace, r.Name) }()
	if len(errs) > 0 {
		return r, errs
	}
	switch {
	case r.APIVersion == "":
		fail("apiVersion", "required")
		return r, errs
	case r.Kind == "":
		fail("kind", "required")
		return r, errs
	case IsWorkloadKind(r.APIVersion, string(r.Kind)):
		info, _ := kindInfo(r.Kind)
		_, version, _ := strings.Cut(r.APIVersion, "/")
		if info.Group == "" {
			version = r.APIVersion
		}
		return decodeKube(obj, r, info, version, defaultNamespace)
	case !IsIstioKind(r.APIVersion, string(r.Kind)):
		fail("", "kind %s (%s) is not a kind meshlab accepts; it takes Istio's %s and Kubernetes' %s", r.Kind, r.APIVersion, supportedKinds(), workloadKindNames())
		return r, errs
	}
	info, ok := kindInfo(r.Kind)
	group, version, _ := strings.Cut(r.APIVersion, "/")
	if !ok || info.Group != group {
		fail("", "kind %s of %s is not supported by meshlab; it accepts %s", r.Kind, group, supportedKinds())
		return r, errs
	}
	if !contains(info.Versions, version) {
		fail("apiVersion", "%s does not serve %s; use %s", r.APIVersion, r.Kind, apiVersions(info))
		return r, errs
	}

	for _, k := range sortedMapKeys(obj) {
		if !contains(topLevelFields, k) {
			fail(k, "%s", unknownField(k, topLevelFields))
		}
	}
	switch m := obj["metadata"].(type) {
	case map[string]any:
		for _, k := range sortedMapKeys(m) {
			if !contains(metadataFields, k) {
				fail("metadata."+k, "%s", unknownField(k, []string{"name", "namespace", "labels", "annotations"}))
			}
		}
		r.Labels = stringMap(m["labels"], "metadata.labels", fail)
		r.Annotations = stringMap(m["annotations"], "metadata.annotations", fail)
		if m["resourceVersion"] != nil {
			s := str("metadata.resourceVersion", m["resourceVersion"])
			n, err := strconv.ParseUint(s, 10, 64)
			if s != "" && err != nil {
				fail("metadata.resourceVersion", "expected a decimal revision, got %q", s)
			}
			r.Revision = n
		}
		if m["creationTimestamp"] != nil {
			// What the store and the API server keep; a client's own value
			// is overridden on write, as the API server does.
			s, _ := m["creationTimestamp"].(string)
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				fail("metadata.creationTimestamp", "expected an RFC 3339 time such as 2024-05-01T12:00:00Z, got %s", describe(m["creationTimestamp"]))
			}
			r.CreationTimestamp = t.UTC()
		}
	case nil:
		fail("metadata", "required: a resource needs metadata.name")
	default:
		fail("metadata", "expected an object, got %s", describe(obj["metadata"]))
	}
	switch {
	case meta == nil:
	case r.Name == "":
		fail("metadata.name", "required")
	case len(r.Name) > 253 || !dns1123Subdomain.MatchString(r.Name):
		fail("metadata.name", "invalid name %q: must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (RFC 1123)", r.Name)
	}
	if len(r.Namespace) > 63 || !dns1123Label.MatchString(r.Namespace) {
		fail("metadata.namespace", "invalid namespace %q: must be lowercase letters, digits and '-', starting and ending with a letter or digit (RFC 1123)", r.Namespace)
	}

	spec := info.NewSpec()
	w := walker{}
	norm := w.message("spec", orEmpty(obj["spec"]), spec.ProtoReflect().Descriptor())
	errs = append(errs, w.errs...)
	if len(errs) > 0 {
		return r, errs
	}
	b, err := json.Marshal(norm)
	if err == nil {
		err = protojson.Unmarshal(b, spec)
	}
	if err != nil {
		// The walker should have caught it; say what protojson said rather than lose it.
		fail("spec", "%v", err)
		return r, errs
	}
	r.Spec = spec
	return r, nil
}

func orEmpty(v any) any {
	if v == nil {
		return map[string]any{}
	}
	return v
}

func stringMap(v any, field string, fail func(field, format string, args ...any)) map[string]string {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		fail(field, "expected an object (map of string to string), got %s", describe(v))
		return nil
	}
	out := make(map[string]string, len(m))
	for _, k := range sortedMapKeys(m) {
		s, ok := m[k].(string)
		if !ok {
			fail(field+"["+k+"]", "expected a string, got %s; quote it", describe(m[k]))
			continue
		}
		out[k] = s
	}
	return out
}

func kindInfo(k Kind) (KindInfo, bool) {
	for _, list := range [][]KindInfo{Kinds, WorkloadKinds} {
		for _, i := range list {
			if i.Kind == k {
				return i, true
			}
		}
	}
	return KindInfo{}, false
}

func workloadKindNames() string {
	n := make([]string, len(WorkloadKinds))
	for i, k := range WorkloadKinds {
		n[i] = k.Group + "/" + k.Versions[0] + " " + string(k.Kind)
		n[i] = strings.TrimPrefix(n[i], "/")
	}
	return strings.Join(n, ", ")
}

func supportedKinds() string {
	n := make([]string, len(Kinds))
	for i, k := range Kinds {
		n[i] = string(k.Kind)
	}
	return strings.Join(n, ", ")
}

func apiVersions(k KindInfo) string {
	v := make([]string, len(k.Versions))
	for i, x := range k.Versions {
		v[i] = k.Group + "/" + x
	}
	return strings.Join(v, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
