package analyze

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Level is how bad a message is, with Istio's three levels.
type Level int

// Levels, least severe first.
const (
	Info Level = iota
	Warning
	Error
)

func (l Level) String() string {
	switch l {
	case Error:
		return "Error"
	case Warning:
		return "Warning"
	default:
		return "Info"
	}
}

// MarshalJSON writes the level as istioctl does: "Error", "Warning", "Info".
func (l Level) MarshalJSON() ([]byte, error) { return json.Marshal(l.String()) }

// UnmarshalJSON reads what MarshalJSON writes.
func (l *Level) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	switch s {
	case "Error":
		*l = Error
	case "Warning":
		*l = Warning
	case "Info":
		*l = Info
	default:
		return fmt.Errorf("unknown level %q", s)
	}
	return nil
}

// Type is one kind of finding: Istio's code, name and level where Istio has
// one (https://istio.io/latest/docs/reference/config/analysis/), else a
// meshlab code (MLB…) for what Istio's analyzers do not cover.
type Type struct {
	Code  string
	Name  string
	Level Level
}

// The message types Analyze reports.
var (
	ReferencedResourceNotFound                    = Type{"IST0101", "ReferencedResourceNotFound", Error}
	SchemaValidationError                         = Type{"IST0106", "SchemaValidationError", Error}
	ConflictingMeshGatewayVirtualServiceHosts     = Type{"IST0109", "ConflictingMeshGatewayVirtualServiceHosts", Error}
	VirtualServiceDestinationPortSelectorRequired = Type{"IST0112", "VirtualServiceDestinationPortSelectorRequired", Error}
	VirtualServiceHostNotFoundInGateway           = Type{"IST0132", "VirtualServiceHostNotFoundInGateway", Warning}
	DestinationRuleSubsetNotSelectPods            = Type{"IST0173", "DestinationRuleSubsetNotSelectPods", Error}
	// Istio merges VirtualServices bound to one gateway for one host, in
	// creation order, so it does not call this an error; which rule wins is
	// still rarely what the author meant.
	ConflictingGatewayVirtualServiceHosts = Type{"MLB0001", "ConflictingGatewayVirtualServiceHosts", Warning}
	// A mesh VirtualService whose host is no Service or ServiceEntry applies
	// to no traffic of any sidecar.
	VirtualServiceHostNotInRegistry = Type{"MLB0002", "VirtualServiceHostNotInRegistry", Warning}
)

// Origin is where a resource came from: a file and the document in it.
type Origin struct {
	File string `json:"file,omitempty"`
	Doc  int    `json:"document"`       // 0-based, as config.Error counts
	Line int    `json:"line,omitempty"` // 1-based line of the field (or of the document); 0 when unknown
}

// Message is one finding about one resource.
type Message struct {
	Type
	Text      string // the message, without code, level or resource
	Kind      string // resource the finding is about
	Namespace string
	Name      string
	Field     string // e.g. spec.http[0].route[1].destination.subset; empty for the whole resource
	Origin    *Origin
}

// Key is the resource's Kind/namespace/name, as config.Resource.Key.
func (m Message) Key() string { return m.Kind + "/" + m.Namespace + "/" + m.Name }

// String reads like istioctl analyze's output, with the field path before
// the text:
//
//	Error [IST0101] (VirtualService default/reviews vs.yaml:12) spec.http[0].route[1].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v9"
func (m Message) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] (%s", m.Level, m.Code, m.resource())
	if ref := m.reference(); ref != "" {
		b.WriteString(" " + ref)
	}
	b.WriteString(") ")
	if m.Field != "" {
		b.WriteString(m.Field + ": ")
	}
	b.WriteString(m.Text)
	return b.String()
}

func (m Message) resource() string {
	switch {
	case m.Name == "" && m.Kind == "":
		return "document"
	case m.Name == "":
		return m.Kind
	case m.Namespace == "":
		return m.Kind + " " + m.Name
	}
	return m.Kind + " " + m.Namespace + "/" + m.Name
}

func (m Message) reference() string {
	if m.Origin == nil || m.Origin.File == "" {
		return ""
	}
	if m.Origin.Line > 0 {
		return fmt.Sprintf("%s:%d", m.Origin.File, m.Origin.Line)
	}
	return fmt.Sprintf("%s document %d", m.Origin.File, m.Origin.Doc+1)
}

// jsonMessage is istioctl analyze -o json's shape, plus the field and the
// document.
type jsonMessage struct {
	Code             string  `json:"code"`
	DocumentationURL string  `json:"documentationUrl,omitempty"`
	Level            Level   `json:"level"`
	Message          string  `json:"message"`
	Origin           string  `json:"origin"`
	Reference        string  `json:"reference,omitempty"`
	Field            string  `json:"field,omitempty"`
	Source           *Origin `json:"source,omitempty"`
}

// MarshalJSON writes the message as istioctl analyze -o json does.
func (m Message) MarshalJSON() ([]byte, error) {
	j := jsonMessage{Code: m.Code, Level: m.Level, Message: m.Text, Origin: m.resource(),
		Reference: m.reference(), Field: m.Field, Source: m.Origin}
	if strings.HasPrefix(m.Code, "IST") {
		j.DocumentationURL = "https://istio.io/latest/docs/reference/config/analysis/" + strings.ToLower(m.Code) + "/"
	}
	return json.Marshal(j)
}

// Worst is the highest level among msgs, and false when there are none.
func Worst(msgs []Message) (Level, bool) {
	worst, any := Info, false
	for _, m := range msgs {
		if !any || m.Level > worst {
			worst, any = m.Level, true
		}
	}
	return worst, any
}

// sortMessages orders messages as istioctl does: by origin, then by field
// and code, so output is stable.
func sortMessages(msgs []Message) {
	sort.SliceStable(msgs, func(i, j int) bool {
		a, b := msgs[i], msgs[j]
		if a.resource() != b.resource() {
			return a.resource() < b.resource()
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		return a.Code < b.Code
	})
}
