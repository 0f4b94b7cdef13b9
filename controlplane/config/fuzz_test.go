package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"
	sigsyaml "sigs.k8s.io/yaml"
)

// seedFiles are every fixture, valid or not, as fuzz seeds.
func seedFiles(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
}

// FuzzParse feeds arbitrary bytes to Parse: it must not panic, it returns
// resources or an error, never both, and what it accepts is valid and
// survives Marshal and Unmarshal unchanged (the store keeps it that way).
func FuzzParse(f *testing.F) {
	seedFiles(f)
	f.Add([]byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"a"},"spec":{"hosts":["a"]}}`))
	f.Add([]byte("[{\"kind\":\"List\",\"items\":[{}]}]"))
	// The Kubernetes kinds go through the same decode, validation and
	// round trip.
	f.Add([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w, namespace: foo}\nspec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n    spec: {containers: [{name: w, image: meshlab.local/meshlab, args: [sample, httpbin]}]}\n"))
	f.Add([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: NodePort, clusterIP: None, selector: {app: w}, ports: [{name: http, port: 80, nodePort: 30123}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse("fuzz.yaml", data)
		if err != nil {
			if rs != nil {
				t.Fatalf("Parse returned %d resources and an error", len(rs))
			}
			if _, ok := err.(ErrorList); !ok {
				t.Fatalf("Parse error is %T, want ErrorList: %v", err, err)
			}
			return
		}
		for _, r := range rs {
			if err := Validate(r); err != nil {
				t.Fatalf("Parse accepted what Validate refuses: %v", err)
			}
			doc, err := Marshal(r)
			if err != nil {
				t.Fatalf("Marshal %s: %v", r.Key(), err)
			}
			b, err := json.Marshal(doc)
			if err != nil {
				t.Fatalf("encode %s: %v", r.Key(), err)
			}
			back, err := Unmarshal(b)
			if err != nil {
				t.Fatalf("Unmarshal of marshalled %s: %v\n%s", r.Key(), err, b)
			}
			if err := Validate(back); err != nil {
				t.Fatalf("stored %s no longer validates: %v\n%s", r.Key(), err, b)
			}
			if !proto.Equal(back.Spec, r.Spec) {
				t.Fatalf("%s changed through the store:\n got %v\nwant %v", r.Key(), back.Spec, r.Spec)
			}
		}
	})
}

// FuzzSplit: Split must not panic, and each document it returns is JSON
// that Unmarshal reads without panicking.
func FuzzSplit(f *testing.F) {
	seedFiles(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := Split(data)
		if err != nil {
			return
		}
		for _, d := range docs {
			if !json.Valid(d.JSON) {
				t.Fatalf("document %d is not JSON: %s", d.Index, d.JSON)
			}
			_, _ = Unmarshal(d.JSON)
		}
	})
}

// yamlViaJSON is how documents were read before decodeYAML: YAML to JSON
// text with sigs.k8s.io/yaml, then decoded with UseNumber.
func yamlViaJSON(doc []byte) (any, error) {
	j, err := sigsyaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	return decodeJSON(j)
}

var yamlSeeds = []string{
	"a: 1\nb: -2\nc: 1.5\nd: 1e30\ne: 0.0000001\nf: .inf\n",
	"1: a\ntrue: b\n1.5: c\n~: d\n",
	"a: .nan\n",
	"a: 9223372036854775807\nb: 18446744073709551615\nc: 18446744073709551616\n",
	"a: !!binary aGVsbG8=\nb: 2001-12-14t21:59:43.10-05:00\nc: yes\nd: off\ne: 0x1F\nf: 0o17\ng: 017\n",
	"[1, {a: [2, 3.0]}, null, 'x']\n",
	"a: &x {b: 1}\nc: *x\n",
	"",
	"# only a comment\n",
}

// FuzzDecodeYAML holds decodeYAML to what it replaced: the same values, or
// an error where that gave one.
func FuzzDecodeYAML(f *testing.F) {
	seedFiles(f)
	for _, s := range yamlSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, gotErr := decodeYAML(doc)
		if errors.Is(gotErr, errKeyCollision) {
			// The old path kept one of the colliding keys at random (map
			// order): nothing to compare with; refusing is the point.
			return
		}
		want, wantErr := yamlViaJSON(doc)
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("decodeYAML error %v, via JSON %v\n%q", gotErr, wantErr, doc)
		}
		if gotErr == nil && !reflect.DeepEqual(normNumbers(got), normNumbers(want)) {
			t.Fatalf("decodeYAML:\n %#v\nvia JSON:\n %#v\n%q", got, want, doc)
		}
	})
}

// normNumbers compares numbers by value: both spellings of a float are
// the same number to the walker.
func normNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normNumbers(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normNumbers(e)
		}
		return out
	case json.Number:
		if _, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return string(x)
		}
		if f, err := strconv.ParseFloat(string(x), 64); err == nil {
			return f
		}
		return string(x)
	}
	return v
}

// TestDecodeYAMLKeyCollision: keys that are different YAML values but the
// same JSON key make the document ambiguous, and it is refused; keys that
// only look alike stay apart. (FuzzDecodeYAML found 0 and 0.: the old path
// kept either, by map order.)
func TestDecodeYAMLKeyCollision(t *testing.T) {
	for _, tt := range []struct {
		doc     string
		collide bool
	}{
		{"0.: \n0: x\n", true},
		{"1: a\n\"1\": b\n", true},
		{"true: a\n\"true\": b\n", true},
		{"a: {1: x, 1.0: y}\n", true},
		{"1: a\n\"01\": b\n", false},
		{"a: 1\nb: 2\n", false},
	} {
		_, err := decodeYAML([]byte(tt.doc))
		if got := errors.Is(err, errKeyCollision); got != tt.collide {
			t.Errorf("decodeYAML(%q): error %v, want a key collision: %v", tt.doc, err, tt.collide)
		}
	}
}
