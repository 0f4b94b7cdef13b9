// Package values owns istiod's helm values as `meshlab up` takes them:
// `--values FILE` (repeatable) and `--set KEY=VALUE` (repeatable), merged
// as helm merges them (files in order, then each --set), over the lab's
// defaults. Of istiod's chart meshlab reads the `meshConfig` subtree,
// which becomes the `mesh` key of the `istio` ConfigMap in istio-system,
// exactly what istiod's chart renders (templates/configmap.yaml) and what
// istiod reads. Other top-level keys are reported, not applied.
package values

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane/meshconfig"
)

// Defaults are the lab's values: the walkthrough's (tracing on at 100 %,
// Prometheus merge on) plus the demo profile's access log to stdout, with
// Istio's default Zipkin address, where the lab runs its trace store.
func Defaults() map[string]any {
	return map[string]any{
		"meshConfig": map[string]any{
			"enableTracing":         true,
			"enablePrometheusMerge": true,
			"accessLogFile":         "/dev/stdout",
			"defaultConfig": map[string]any{
				"tracing": map[string]any{
					"sampling": 100.0,
					"zipkin":   map[string]any{"address": "zipkin.istio-system:9411"},
				},
			},
		},
	}
}

// Values are merged helm values.
type Values struct {
	tree map[string]any
	// Ignored are the top-level keys given that meshlab does not read
	// (istiod's chart has many: pilot, global, …), for the caller to say.
	Ignored []string
}

// Load merges the lab's defaults, then each values file in order, then
// each --set in order, as `helm install -f a -f b --set x=1` does.
func Load(files, sets []string) (Values, error) {
	tree := Defaults()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return Values{}, fmt.Errorf("read values file: %w", err)
		}
		var v map[string]any
		if err := yaml.Unmarshal(data, &v); err != nil {
			return Values{}, fmt.Errorf("values file %s: %w", f, err)
		}
		merge(tree, v)
	}
	for _, s := range sets {
		if err := Set(tree, s); err != nil {
			return Values{}, fmt.Errorf("--set %s: %w", s, err)
		}
	}
	v := Values{tree: tree}
	for _, k := range slices.Sorted(maps.Keys(tree)) {
		if k != "meshConfig" {
			v.Ignored = append(v.Ignored, k)
		}
	}
	return v, nil
}

// MeshConfig is the `mesh` key of the istio ConfigMap: the meshConfig
// subtree rendered as istiod's chart renders it (its own defaults under
// the values given) and checked as istiod loads it, strictly: an unknown
// or mistyped field is an error naming it under meshConfig.
func (v Values) MeshConfig() (string, error) {
	mc, _ := v.tree["meshConfig"].(map[string]any)
	if raw, ok := v.tree["meshConfig"]; ok && raw != nil && mc == nil {
		return "", fmt.Errorf("helm values meshConfig: want a map of MeshConfig fields, found %T", raw)
	}
	out, err := meshconfig.FromHelmValues(mc)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// merge overlays src on dst as helm coalesces values: maps merge key by
// key, anything else replaces, and a null deletes the key.
func merge(dst, src map[string]any) {
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		sm, sok := sv.(map[string]any)
		dm, dok := dst[k].(map[string]any)
		if sok && dok {
			merge(dm, sm)
			continue
		}
		dst[k] = sv
	}
}

// Set applies one --set argument to tree with helm's syntax: comma
// separated KEY=VALUE pairs, keys as dotted paths with [N] list indexes
// (`a.b[0].c=x`), `\.` and `\,` escaping a literal dot or comma, values
// typed as helm types them (true, false, null, integers; anything else a
// string) and `{a,b}` a list of such values.
func Set(tree map[string]any, arg string) error {
	if i := strings.IndexFunc(arg, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(arg[i:])
		return fmt.Errorf("control character %q at byte %d: values files and --set hold text", r, i)
	}
	for _, pair := range splitUnescaped(arg, ',', true) {
		key, val, ok := strings.Cut(pair, "=")
		if !ok || key == "" {
			return fmt.Errorf("%q: want KEY=VALUE", pair)
		}
		path, err := parseKey(key)
		if err != nil {
			return err
		}
		if err := setPath(tree, path, typed(val)); err != nil {
			return fmt.Errorf("key %s: %w", key, err)
		}
	}
	return nil
}

// splitUnescaped splits s at sep, except where a backslash escapes it or
// (braces) inside {…}; the escape stays for the key parser.
func splitUnescaped(s string, sep byte, braces bool) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case braces && s[i] == '{':
			depth++
		case braces && s[i] == '}' && depth > 0:
			depth--
		case s[i] == sep && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// segment is one step of a key path: a map key, or a list index (idx ≥ 0).
type segment struct {
	key string
	idx int
}

func parseKey(key string) ([]segment, error) {
	var path []segment
	for _, part := range splitUnescaped(key, '.', false) {
		name, rest, _ := strings.Cut(part, "[")
		name = strings.NewReplacer(`\.`, ".", `\,`, ",").Replace(name)
		if name == "" {
			return nil, fmt.Errorf("key %s: empty name in the path", key)
		}
		if i := strings.IndexFunc(name, func(r rune) bool { return !keyRune(r) }); i >= 0 {
			return nil, fmt.Errorf("key %s: %q is not a values key (letters, digits and _ - . / only, as MeshConfig's fields and the label and env names under them)", key, name)
		}
		path = append(path, segment{key: name, idx: -1})
		for rest != "" {
			n, after, ok := strings.Cut(rest, "]")
			i, err := strconv.Atoi(n)
			if !ok || err != nil || i < 0 {
				return nil, fmt.Errorf("key %s: list index [%s: want [N] with N ≥ 0", key, n)
			}
			path = append(path, segment{idx: i})
			rest = strings.TrimPrefix(after, "[")
			if after != "" && !strings.HasPrefix(after, "[") {
				return nil, fmt.Errorf("key %s: unexpected %q after ]", key, after)
			}
		}
	}
	return path, nil
}

func keyRune(r rune) bool {
	return r == '_' || r == '-' || r == '.' || r == '/' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// setPath sets the value at path, creating maps and growing lists on the
// way, as helm's strvals does.
func setPath(tree map[string]any, path []segment, val any) error {
	var cur any = tree
	// assign replaces the current node in its parent, for a list that grew.
	var assign func(any)
	for i, seg := range path {
		last := i == len(path)-1
		var next any
		if seg.idx < 0 {
			m, ok := cur.(map[string]any)
			if !ok {
				return errors.New("a map key under a value that is not a map")
			}
			if last {
				if val == nil {
					delete(m, seg.key) // helm: null removes the key
				} else {
					m[seg.key] = val
				}
				return nil
			}
			next = m[seg.key]
			if next == nil {
				if path[i+1].idx >= 0 {
					next = []any{}
				} else {
					next = map[string]any{}
				}
				m[seg.key] = next
			}
			k := seg.key
			assign = func(v any) { m[k] = v }
		} else {
			l, ok := cur.([]any)
			if !ok {
				return fmt.Errorf("index [%d] under a value that is not a list", seg.idx)
			}
			for len(l) <= seg.idx {
				l = append(l, nil)
			}
			assign(l)
			if last {
				l[seg.idx] = val
				return nil
			}
			next = l[seg.idx]
			if next == nil {
				if path[i+1].idx >= 0 {
					next = []any{}
				} else {
					next = map[string]any{}
				}
				l[seg.idx] = next
			}
			j, list := seg.idx, l
			assign = func(v any) { list[j] = v }
		}
		cur = next
	}
	return nil
}

// typed types a --set value as helm does.
func typed(s string) any {
	if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
		inner := s[1 : len(s)-1]
		if inner == "" {
			return []any{}
		}
		var l []any
		for _, e := range splitUnescaped(inner, ',', false) {
			l = append(l, typed(e))
		}
		return l
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	return strings.NewReplacer(`\,`, ",", `\.`, ".").Replace(s)
}

// ConfigMap is the istio ConfigMap holding mesh (the YAML of
// MeshConfig), as istiod's chart installs it, for an apply.
func ConfigMap(mesh string) ([]byte, error) {
	out, err := yaml.Marshal(meshconfig.ConfigMap([]byte(mesh)))
	if err != nil {
		return nil, fmt.Errorf("render the istio ConfigMap: %w", err)
	}
	return out, nil
}
