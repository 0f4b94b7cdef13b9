package config

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// walker checks a generic JSON value (as encoding/json decodes it with
// UseNumber) against a protobuf message descriptor before protojson sees it.
// protojson stops at the first problem and names it by proto field, not by
// where it is in the document; the walker reports every problem with a
// Kubernetes-style path and says what was expected. It also returns the
// value rewritten into the form protojson accepts (Go-style durations such as
// "1m" become "60s", nulls are dropped, integral floats become integers), so
// that what Istio's CRD schema accepts, meshlab accepts.
type walker struct {
	errs ErrorList
}

func (w *walker) fail(path, format string, args ...any) {
	w.errs = append(w.errs, &Error{Field: path, Msg: fmt.Sprintf(format, args...)})
}

// message walks an object that should be md.
func (w *walker) message(path string, v any, md protoreflect.MessageDescriptor) any {
	switch md.FullName() {
	case "google.protobuf.Duration":
		return w.duration(path, v)
	case "google.protobuf.Timestamp":
		s, ok := v.(string)
		if !ok {
			w.fail(path, "expected an RFC 3339 timestamp string, got %s", describe(v))
			return nil
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			w.fail(path, "invalid timestamp %q; expected RFC 3339, e.g. \"2024-01-02T15:04:05Z\"", s)
		}
		return s
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
		"google.protobuf.Int64Value", "google.protobuf.UInt64Value",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		// Wrappers are written as their plain value.
		return w.scalar(path, v, md.Fields().ByName("value"))
	case "google.protobuf.Value":
		return v
	case "google.protobuf.Struct", "google.protobuf.Empty", "google.protobuf.Any":
		if _, ok := v.(map[string]any); !ok {
			w.fail(path, "expected an object, got %s", describe(v))
		}
		return v
	case "google.protobuf.ListValue":
		if _, ok := v.([]any); !ok {
			w.fail(path, "expected a list, got %s", describe(v))
		}
		return v
	case "google.protobuf.FieldMask":
		if _, ok := v.(string); !ok {
			w.fail(path, "expected a string of comma-separated field paths, got %s", describe(v))
		}
		return v
	}

	obj, ok := v.(map[string]any)
	if !ok {
		w.fail(path, "expected an object (%s), got %s", md.Name(), describe(v))
		return nil
	}
	out := make(map[string]any, len(obj))
	set := map[protoreflect.FullName]string{} // oneof -> the key that set it
	fields := md.Fields()
	for _, key := range sortedMapKeys(obj) {
		val := obj[key]
		fp := join(path, key)
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		if fd == nil {
			w.fail(fp, "%s", unknownField(key, jsonNames(md)))
			continue
		}
		if _, dup := out[fd.JSONName()]; dup {
			w.fail(fp, "field %q is set twice (as %q and %q)", fd.JSONName(), fd.JSONName(), fd.TextName())
			continue
		}
		// protojson treats null as "not set", except for google.protobuf.Value.
		if val == nil && !isProtoValue(fd) {
			continue
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if prev, ok := set[od.FullName()]; ok {
				w.fail(path, "only one of %s may be set, got %q and %q", oneofNames(od), prev, key)
				continue
			}
			set[od.FullName()] = key
		}
		out[fd.JSONName()] = w.field(fp, val, fd)
	}
	return out
}

// field walks the value of one field, which may be a list or a map.
func (w *walker) field(path string, v any, fd protoreflect.FieldDescriptor) any {
	switch {
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			w.fail(path, "expected an object (map of %s to %s), got %s", mapKeyNoun(fd), typeNoun(fd.MapValue()), describe(v))
			return nil
		}
		out := make(map[string]any, len(obj))
		for _, k := range sortedMapKeys(obj) {
			kp := path + "[" + k + "]"
			if err := checkMapKey(k, fd.MapKey()); err != "" {
				w.fail(kp, "%s", err)
				continue
			}
			if obj[k] == nil {
				w.fail(kp, "expected %s, got null", typeNoun(fd.MapValue()))
				continue
			}
			out[k] = w.single(kp, obj[k], fd.MapValue())
		}
		return out
	case fd.IsList():
		list, ok := v.([]any)
		if !ok {
			w.fail(path, "expected a list of %s, got %s", pluralNoun(fd), describe(v))
			return nil
		}
		out := make([]any, len(list))
		for i, e := range list {
			ep := fmt.Sprintf("%s[%d]", path, i)
			if e == nil {
				w.fail(ep, "expected %s, got null", typeNoun(fd))
				continue
			}
			out[i] = w.single(ep, e, fd)
		}
		return out
	default:
		return w.single(path, v, fd)
	}
}

// single walks one value of fd's type, ignoring its cardinality.
func (w *walker) single(path string, v any, fd protoreflect.FieldDescriptor) any {
	if md := fd.Message(); md != nil {
		return w.message(path, v, md)
	}
	return w.scalar(path, v, fd)
}

func (w *walker) scalar(path string, v any, fd protoreflect.FieldDescriptor) any {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			w.fail(path, "expected a string, got %s", describe(v))
		}
		return v
	case protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			w.fail(path, "expected a base64 string, got %s", describe(v))
		}
		return v
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			w.fail(path, "expected a boolean (true or false), got %s", describe(v))
		}
		return v
	case protoreflect.EnumKind:
		return w.enum(path, v, fd.Enum())
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if _, ok := v.(json.Number); !ok {
			w.fail(path, "expected a number, got %s", describe(v))
		}
		return v
	default:
		return w.integer(path, v, fd.Kind())
	}
}

func (w *walker) integer(path string, v any, k protoreflect.Kind) any {
	var text string
	switch x := v.(type) {
	case json.Number:
		text = x.String()
	case string:
		// protojson writes 64-bit integers as strings; accept them back.
		if k != protoreflect.Int64Kind && k != protoreflect.Sint64Kind && k != protoreflect.Sfixed64Kind &&
			k != protoreflect.Uint64Kind && k != protoreflect.Fixed64Kind {
			w.fail(path, "expected an integer, got %s", describe(v))
			return v
		}
		text = x
	default:
		w.fail(path, "expected an integer, got %s", describe(v))
		return v
	}
	signed, bits := true, 64
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		bits = 32
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		signed, bits = false, 32
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		signed = false
	}
	if signed {
		n, err := strconv.ParseInt(text, 10, bits)
		if err != nil {
			f, ferr := strconv.ParseFloat(text, 64)
			if ferr != nil || f != math.Trunc(f) || f < math.MinInt64 || f > math.MaxInt64 {
				w.fail(path, "expected an integer, got %s", text)
				return v
			}
			n = int64(f)
			if bits == 32 && (n < math.MinInt32 || n > math.MaxInt32) {
				w.fail(path, "%s is out of range for a 32-bit integer", text)
				return v
			}
			if _, err := strconv.ParseInt(strconv.FormatInt(n, 10), 10, bits); err != nil {
				w.fail(path, "%s is out of range", text)
				return v
			}
		}
		return json.Number(strconv.FormatInt(n, 10))
	}
	n, err := strconv.ParseUint(text, 10, bits)
	if err != nil {
		f, ferr := strconv.ParseFloat(text, 64)
		switch {
		case ferr != nil || f != math.Trunc(f):
			w.fail(path, "expected a non-negative integer, got %s", text)
			return v
		case f < 0:
			w.fail(path, "expected a non-negative integer, got %s", text)
			return v
		case bits == 32 && f > math.MaxUint32, f > math.MaxUint64:
			w.fail(path, "%s is out of range", text)
			return v
		}
		n = uint64(f)
	}
	return json.Number(strconv.FormatUint(n, 10))
}

func (w *walker) enum(path string, v any, ed protoreflect.EnumDescriptor) any {
	vals := ed.Values()
	switch x := v.(type) {
	case string:
		if vals.ByName(protoreflect.Name(x)) != nil {
			return x
		}
		names := make([]string, vals.Len())
		for i := range names {
			names[i] = string(vals.Get(i).Name())
		}
		msg := fmt.Sprintf("invalid value %q; expected one of %s", x, quoteAll(names))
		if s := suggest(x, names); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		w.fail(path, "%s", msg)
		return v
	case json.Number:
		n, err := strconv.ParseInt(x.String(), 10, 32)
		if err != nil || vals.ByNumber(protoreflect.EnumNumber(n)) == nil {
			w.fail(path, "invalid value %s for %s", x, ed.Name())
		}
		return v
	default:
		w.fail(path, "expected one of %s, got %s", quoteAll(enumNames(ed)), describe(v))
		return v
	}
}

// duration accepts protojson's form ("1.5s") and Go's ("1m30s", "100ms"),
// which is what Istio users write, and returns protojson's form.
func (w *walker) duration(path string, v any) any {
	s, ok := v.(string)
	if !ok {
		w.fail(path, "expected a duration string such as \"5s\" or \"100ms\", got %s", describe(v))
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		w.fail(path, "invalid duration %q; expected a number with a unit, e.g. \"5s\", \"100ms\", \"1m\"", s)
		return nil
	}
	if d < 0 {
		w.fail(path, "invalid duration %q: must not be negative", s)
		return nil
	}
	return formatDuration(d)
}

func formatDuration(d time.Duration) string {
	sec, nsec := int64(d/time.Second), int64(d%time.Second)
	if nsec == 0 {
		return strconv.FormatInt(sec, 10) + "s"
	}
	frac := strings.TrimRight(fmt.Sprintf("%09d", nsec), "0")
	return fmt.Sprintf("%d.%ss", sec, frac)
}

// describe names the JSON type of v for "got ..." in messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("a string (%q)", x)
	case json.Number:
		return "a number (" + x.String() + ")"
	case bool:
		return "a boolean (" + strconv.FormatBool(x) + ")"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// typeNoun names the type of one value of fd, e.g. "StringMatch" or "string".
func typeNoun(fd protoreflect.FieldDescriptor) string {
	if md := fd.Message(); md != nil {
		switch md.FullName() {
		case "google.protobuf.Duration":
			return "duration"
		case "google.protobuf.Struct":
			return "object"
		}
		return string(md.Name())
	}
	if ed := fd.Enum(); ed != nil {
		return string(ed.Name())
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return "string"
	case protoreflect.BoolKind:
		return "boolean"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "number"
	case protoreflect.BytesKind:
		return "base64 string"
	default:
		return "integer"
	}
}

func pluralNoun(fd protoreflect.FieldDescriptor) string {
	n := typeNoun(fd)
	if fd.Message() != nil && !isWellKnown(fd.Message()) {
		return n + " objects"
	}
	if fd.Enum() != nil {
		return n + " values"
	}
	return n + "s"
}

func isWellKnown(md protoreflect.MessageDescriptor) bool {
	return strings.HasPrefix(string(md.FullName()), "google.protobuf.")
}

// mapKeyNoun says what the keys of a map field are, for messages like
// "expected an object (map of header name to StringMatch)".
func mapKeyNoun(fd protoreflect.FieldDescriptor) string {
	name := strings.ToLower(fd.JSONName())
	switch {
	case strings.HasSuffix(name, "headers"):
		return "header name"
	case strings.HasSuffix(name, "labels"):
		return "label name"
	case strings.HasSuffix(name, "annotations"):
		return "annotation name"
	case name == "queryparams":
		return "query parameter name"
	case fd.MapKey().Kind() == protoreflect.StringKind:
		return "string"
	default:
		return "integer"
	}
}

func checkMapKey(k string, fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return ""
	case protoreflect.BoolKind:
		if k != "true" && k != "false" {
			return fmt.Sprintf("map key %q must be true or false", k)
		}
	default:
		if _, err := strconv.ParseInt(k, 10, 64); err != nil {
			return fmt.Sprintf("map key %q must be an integer", k)
		}
	}
	return ""
}

func unknownField(key string, names []string) string {
	msg := fmt.Sprintf("unknown field %q", key)
	if s := suggest(key, names); s != "" {
		return msg + fmt.Sprintf("; did you mean %q?", s)
	}
	return msg + "; valid fields are " + strings.Join(names, ", ")
}

func jsonNames(md protoreflect.MessageDescriptor) []string {
	fs := md.Fields()
	out := make([]string, fs.Len())
	for i := range out {
		out[i] = fs.Get(i).JSONName()
	}
	sort.Strings(out)
	return out
}

func enumNames(ed protoreflect.EnumDescriptor) []string {
	vs := ed.Values()
	out := make([]string, vs.Len())
	for i := range out {
		out[i] = string(vs.Get(i).Name())
	}
	return out
}

func oneofNames(od protoreflect.OneofDescriptor) string {
	fs := od.Fields()
	n := make([]string, fs.Len())
	for i := range n {
		n[i] = fs.Get(i).JSONName()
	}
	return quoteAll(n)
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

// suggest returns the candidate closest to s by edit distance (ignoring
// case), if it is close enough to be what was meant.
func suggest(s string, candidates []string) string {
	best, bestD := "", math.MaxInt
	ls := strings.ToLower(s)
	for _, c := range candidates {
		if d := editDistance(ls, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	limit := 2
	if n := len([]rune(s)) / 3; n > limit {
		limit = n
	}
	if bestD > limit || bestD >= len([]rune(s)) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b; field names are
// short, so the quadratic table is fine.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// isProtoValue reports whether fd holds one google.protobuf.Value, the
// one field for which null is a value.
func isProtoValue(fd protoreflect.FieldDescriptor) bool {
	return fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Value" && !fd.IsList() && !fd.IsMap()
}

// join appends a field to a path; keys that are not plain identifiers are
// written as [key] so the path stays readable.
func join(path, key string) string {
	if path == "" {
		return key
	}
	for _, r := range key {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' {
			return path + "[" + key + "]"
		}
	}
	return path + "." + key
}
