package config

import (
	"fmt"
	"strings"
)

// Error is one problem with one document: where it is (file, document,
// resource, field path) and what is wrong. Field paths are written the way
// Kubernetes writes them, e.g. spec.http[0].match[0].headers[end-user].
type Error struct {
	File      string // empty when the document did not come from a file
	Doc       int    // 0-based index of the document in File
	Kind      string // as written; empty when the document names none
	Namespace string
	Name      string
	Field     string // empty when the problem is the whole document
	Msg       string
}

// Error reads like
//
//	vs.yaml: document 2 (VirtualService default/reviews): spec.http[0].match[0].header: unknown field "header"; did you mean "headers"?
//
// Documents are numbered from 1 in the text, as people count them; Doc
// stays 0-based.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "%s: document %d", e.File, e.Doc+1)
	}
	if id := e.resource(); id != "" {
		if b.Len() > 0 {
			fmt.Fprintf(&b, " (%s)", id)
		} else {
			b.WriteString(id)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) resource() string {
	if e.Kind == "" {
		return ""
	}
	switch {
	case e.Name == "":
		return e.Kind
	case e.Namespace == "":
		return e.Kind + " " + e.Name
	default:
		return e.Kind + " " + e.Namespace + "/" + e.Name
	}
}

// ErrorList is every problem found in one input, in document order.
type ErrorList []*Error

// Error puts one problem on each line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// err returns l as an error, or nil when it is empty, so that a nil
// ErrorList never becomes a non-nil error interface.
func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// at stamps every error with where its document came from.
func (l ErrorList) at(file string, doc int) {
	for _, e := range l {
		e.File, e.Doc = file, doc
	}
}

// about stamps every error with the resource it concerns.
func (l ErrorList) about(kind, ns, name string) {
	for _, e := range l {
		e.Kind, e.Namespace, e.Name = kind, ns, name
	}
}
