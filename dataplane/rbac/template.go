package rbac

import (
	"fmt"
	"regexp"
	"strings"
)

// Envoy's uri_template grammar (extensions/path/uri_template_lib): a path of
// "/"-separated segments, each a literal, "*" (one segment), "**" (any text
// including "/", possibly empty), or a variable "{name}" / "{name=...}" whose
// match is such segments; an optional literal suffix after the last segment.
// Istio's "{*}" and "{**}" arrive already rewritten to "*" and "**".
//
// The grammar is compiled to the same regular expression Envoy builds, so a
// template matches exactly the paths it matches in Envoy.

// pchar from RFC 3986 without "*" and "=", as Envoy's kLiteral.
const literalClass = `a-zA-Z0-9\-._~%!$&'()+,;:@`

var (
	validLiteral  = regexp.MustCompile(`^[` + literalClass + `]+$`)
	validVarName  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]*$`)
	validTemplate = regexp.MustCompile(`^/[[:graph:]]*$`)
)

const (
	pathGlob = `[` + literalClass + `]+`  // "*"
	textGlob = `[` + literalClass + `/]*` // "**"
)

type tplSeg struct {
	literal string
	op      string // "*" or "**"
	isVar   bool
	varName string
	varSegs []tplSeg // literal or op only
}

func compileURITemplate(t string) (*regexp.Regexp, error) {
	re, err := uriTemplateRegex(t)
	if err != nil {
		return nil, fmt.Errorf("uri_template %q: %w", t, err)
	}
	return regexp.Compile(`^` + re + `$`)
}

func uriTemplateRegex(t string) (string, error) {
	if !validTemplate.MatchString(t) {
		return "", fmt.Errorf("invalid pattern")
	}
	rest := t[1:]
	var segs []tplSeg
	suffix := ""
	for rest != "" {
		var s tplSeg
		var err error
		switch rest[0] {
		case '*':
			s, rest = consumeOp(rest)
		case '{':
			s, rest, err = consumeVar(rest)
		default:
			s, rest, err = consumeLiteral(rest)
		}
		if err != nil {
			return "", err
		}
		segs = append(segs, s)
		if rest == "" {
			break
		}
		if rest == "/" {
			segs = append(segs, tplSeg{}) // trailing "/": an empty literal
			break
		}
		if rest[0] == '/' {
			rest = rest[1:]
			continue
		}
		lit, r, err := consumeLiteral(rest)
		if err != nil {
			return "", err
		}
		if r != "" {
			return "", fmt.Errorf("prefix match not supported")
		}
		suffix = lit.literal
		break
	}
	if err := checkVars(segs); err != nil {
		return "", err
	}
	parts := make([]string, len(segs))
	for i, s := range segs {
		parts[i] = s.regex()
	}
	return "/" + strings.Join(parts, "/") + regexp.QuoteMeta(suffix), nil
}

func consumeOp(p string) (tplSeg, string) {
	if strings.HasPrefix(p, "**") {
		return tplSeg{op: "**"}, p[2:]
	}
	return tplSeg{op: "*"}, p[1:]
}

func consumeLiteral(p string) (tplSeg, string, error) {
	lit, rest := p, ""
	if i := strings.IndexByte(p, '/'); i >= 0 {
		lit, rest = p[:i], p[i:]
	}
	if !validLiteral.MatchString(lit) {
		return tplSeg{}, "", fmt.Errorf("invalid literal %q", lit)
	}
	return tplSeg{literal: lit}, rest, nil
}

func consumeVar(p string) (tplSeg, string, error) {
	end := strings.IndexByte(p, '}')
	if len(p) < 2 || end < 0 {
		return tplSeg{}, "", fmt.Errorf("unmatched variable bracket")
	}
	body, rest := p[1:end], p[end+1:]
	name, match, hasMatch := strings.Cut(body, "=")
	if !validVarName.MatchString(name) {
		return tplSeg{}, "", fmt.Errorf("invalid variable name %q", name)
	}
	v := tplSeg{isVar: true, varName: name}
	if !hasMatch {
		return v, rest, nil
	}
	if match == "" {
		return tplSeg{}, "", fmt.Errorf("empty variable match")
	}
	for match != "" {
		var s tplSeg
		var err error
		if match[0] == '*' {
			s, match = consumeOp(match)
		} else if s, match, err = consumeLiteral(match); err != nil {
			return tplSeg{}, "", err
		}
		v.varSegs = append(v.varSegs, s)
		if match != "" {
			if match[0] != '/' || len(match) == 1 {
				return tplSeg{}, "", fmt.Errorf("invalid variable match")
			}
			match = match[1:]
		}
	}
	return v, rest, nil
}

// checkVars applies Envoy's limits: at most 5 variables, names of 1 to 16
// characters, no repeats, and no glob after a "**".
func checkVars(segs []tplSeg) error {
	seen := map[string]bool{}
	textGlobSeen := false
	glob := func(op string) error {
		if textGlobSeen {
			return fmt.Errorf("glob after text glob")
		}
		textGlobSeen = op == "**"
		return nil
	}
	for _, s := range segs {
		switch {
		case s.op != "":
			if err := glob(s.op); err != nil {
				return err
			}
		case s.isVar:
			if len(seen) >= 5 {
				return fmt.Errorf("exceeded variable count limit")
			}
			if len(s.varName) > 16 {
				return fmt.Errorf("invalid variable length")
			}
			if seen[s.varName] {
				return fmt.Errorf("repeated variable name %q", s.varName)
			}
			seen[s.varName] = true
			if len(s.varSegs) == 0 && textGlobSeen {
				return fmt.Errorf("implicit variable path glob after text glob")
			}
			for _, vs := range s.varSegs {
				if vs.op == "" {
					continue
				}
				if err := glob(vs.op); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s tplSeg) regex() string {
	switch {
	case s.op == "*":
		return pathGlob
	case s.op == "**":
		return textGlob
	case s.isVar:
		if len(s.varSegs) == 0 {
			return `(?:` + pathGlob + `)`
		}
		parts := make([]string, len(s.varSegs))
		for i, vs := range s.varSegs {
			parts[i] = vs.regex()
		}
		return `(?:` + strings.Join(parts, "/") + `)`
	}
	return regexp.QuoteMeta(s.literal)
}
