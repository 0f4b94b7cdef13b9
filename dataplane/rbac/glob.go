package rbac

import (
	"regexp/syntax"
	"strings"
)

// Istio writes most of its regexes as globs: ".+" for "*", ".*/ns/foo/.*"
// for a namespace, "spiffe://.*-suffix" for a principal suffix. Go's regexp
// spends about a microsecond on a leading ".*"; a glob of literals costs a
// few string searches. globOf recognises exactly the regexes made only of
// literals and ".*" (or a lone ".+") and the matcher uses the glob when the
// value has no newline (the one thing "." does not match); otherwise, and for
// any other regex, the compiled regexp decides, so the result is the same.

type glob struct {
	lits        []string // literals, with ".*" between each pair
	lead, trail bool     // ".*" before the first / after the last literal
	nonEmpty    bool     // the regex is ".+"
}

func globOf(re string) (*glob, bool) {
	r, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return nil, false
	}
	r = r.Simplify()
	if r.Op == syntax.OpPlus && anyNotNL(r.Sub[0]) {
		return &glob{nonEmpty: true}, true
	}
	nodes := []*syntax.Regexp{r}
	if r.Op == syntax.OpConcat {
		nodes = r.Sub
	}
	g := &glob{}
	star := false // a ".*" since the last literal
	for i, n := range nodes {
		switch {
		case n.Op == syntax.OpStar && anyNotNL(n.Sub[0]):
			star = true
			if i == 0 {
				g.lead = true
			}
		case n.Op == syntax.OpLiteral && n.Flags&syntax.FoldCase == 0:
			if len(g.lits) > 0 && !star {
				g.lits[len(g.lits)-1] += string(n.Rune)
			} else {
				g.lits = append(g.lits, string(n.Rune))
			}
			star = false
		case n.Op == syntax.OpEmptyMatch:
		default:
			return nil, false
		}
	}
	g.trail = star && len(g.lits) > 0
	if len(g.lits) == 0 {
		g.lead = star
	}
	return g, true
}

func anyNotNL(r *syntax.Regexp) bool { return r.Op == syntax.OpAnyCharNotNL }

// match assumes s has no newline.
func (g *glob) match(s string) bool {
	if g.nonEmpty {
		return s != ""
	}
	lits := g.lits
	if !g.lead {
		if len(lits) == 0 {
			return s == ""
		}
		if !strings.HasPrefix(s, lits[0]) {
			return false
		}
		s, lits = s[len(lits[0]):], lits[1:]
		if len(lits) == 0 {
			return g.trail || s == ""
		}
	}
	if len(lits) == 0 {
		return true
	}
	if !g.trail {
		last := lits[len(lits)-1]
		if !strings.HasSuffix(s, last) {
			return false
		}
		s, lits = s[:len(s)-len(last)], lits[:len(lits)-1]
	}
	for _, l := range lits {
		i := strings.Index(s, l)
		if i < 0 {
			return false
		}
		s = s[i+len(l):]
	}
	return true
}
