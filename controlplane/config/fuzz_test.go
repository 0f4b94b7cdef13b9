package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
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
