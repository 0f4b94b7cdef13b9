package rbac

import (
	"math/rand/v2"
	"regexp"
	"testing"
)

// TestGlobAgreesWithRegexp: for every regex the glob path takes, it decides
// as the regexp does, on random strings over the patterns' own alphabet.
func TestGlobAgreesWithRegexp(t *testing.T) {
	patterns := []string{
		".+", ".*", "", "abc", ".*/ns/foo/.*", ".*/ns/foo-.*/.*", ".*/ns/.*-bar/.*", "spiffe://.*-suffix",
		"spiffe://a.*", "a.*b", "a.*b.*c", ".*a.*a.*", "aa.*aa", ".*ab", "ab.*", "a.*.*b",
	}
	notGlobs := []string{"a|b", "(?i)abc", "(?s).*", "a.b", "^a$", "a+", "[ab]*", ".+a"}
	for _, p := range notGlobs {
		if _, ok := globOf(p); ok {
			t.Errorf("%q taken as a glob", p)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab/nsfoc-:.")
	for _, p := range patterns {
		g, ok := globOf(p)
		if !ok {
			t.Errorf("%q not taken as a glob", p)
			continue
		}
		re := regexp.MustCompile(`^(?:` + p + `)$`)
		for i := 0; i < 20000; i++ {
			b := make([]byte, rng.IntN(14))
			for j := range b {
				b[j] = alphabet[rng.IntN(len(alphabet))]
			}
			s := string(b)
			if rng.IntN(4) == 0 {
				s = "spiffe://cluster.local/ns/foo/sa/" + s
			}
			if g.match(s) != re.MatchString(s) {
				t.Fatalf("%q on %q: glob %v, regexp %v", p, s, g.match(s), re.MatchString(s))
			}
		}
	}
}

// TestGlobNewline: "." does not match a newline, so a value holding one is
// left to the regexp.
func TestGlobNewline(t *testing.T) {
	m, err := compileString(regex(".*/ns/foo/.*"))
	if err != nil {
		t.Fatal(err)
	}
	if m.glob == nil {
		t.Fatal("namespace regex not taken as a glob")
	}
	if !m.match("spiffe://td/ns/foo/sa/x") || m.match("spiffe://td/ns/foo/sa/x\n") {
		t.Error("newline handling differs from the regexp")
	}
}
