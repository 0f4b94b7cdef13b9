package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/lab"
)

// get's own flags; -n, --state-dir, --controlplane and --token are shared.
var (
	getOutputFlag = &cli.StringFlag{Name: "output", Aliases: []string{"o"},
		Usage: "output format: " + outputFormats + " (default: a table)"}
	selectorFlag = &cli.StringFlag{Name: "selector", Aliases: []string{"l"},
		Usage: "label selector as kubectl takes it: app=productpage, 'version in (v1,v2)', app!=ratings, !canary"}
	allNamespacesFlag = &cli.BoolFlag{Name: "all-namespaces", Aliases: []string{"A"}, Usage: "every namespace"}
	showLabelsFlag    = &cli.BoolFlag{Name: "show-labels", Usage: "add a LABELS column (Kubernetes kinds)"}
	noHeadersFlag     = &cli.BoolFlag{Name: "no-headers", Usage: "leave the table's header out (Kubernetes kinds)"}
)

// kindNames is one kind a get asks for, as typed, and the names asked for
// in it (none: every object).
type kindNames struct {
	kind  string
	names []string
}

// parseGetArgs reads get's arguments as kubectl does: KIND[,KIND...]
// [NAME...], or KIND/NAME... (each with its own kind, as the walkthrough's
// `get pod/details-v1-... -o jsonpath=...`). single is kubectl's "one
// object implied": the output is that object rather than a List.
func parseGetArgs(args []string) (req []kindNames, single bool, err error) {
	if len(args) == 0 {
		return nil, false, fmt.Errorf("name a kind")
	}
	slashed := 0
	for _, a := range args {
		if strings.Contains(a, "/") {
			slashed++
		}
	}
	switch {
	case slashed == 0:
		for _, k := range strings.Split(args[0], ",") {
			if k == "" {
				return nil, false, fmt.Errorf("%q: an empty kind in the list", args[0])
			}
			req = append(req, kindNames{kind: k, names: args[1:]})
		}
		return req, len(req) == 1 && len(args) == 2, nil
	case slashed < len(args):
		return nil, false, fmt.Errorf("there is no need to name a kind as a separate argument with KIND/NAME (e.g. `get pod/NAME`, not `get pod pod/NAME`)")
	}
	at := map[string]int{}
	for _, a := range args {
		k, n, _ := strings.Cut(a, "/")
		if k == "" || n == "" || strings.Contains(n, "/") {
			return nil, false, fmt.Errorf("%q: want KIND/NAME", a)
		}
		i, ok := at[k]
		if !ok {
			i = len(req)
			at[k] = i
			req = append(req, kindNames{kind: k})
		}
		req[i].names = append(req[i].names, n)
	}
	return req, len(args) == 1, nil
}

// namesObjects reports whether a get names its objects (so that a lone
// match prints as that object, not as a list).
func namesObjects(c *cli.Context) bool {
	req, _, err := parseGetArgs(c.Args().Slice())
	if err != nil {
		return false
	}
	for _, r := range req {
		if len(r.names) > 0 {
			return true
		}
	}
	return false
}

const getUsage = "usage: meshlab get KIND[,KIND...] [NAME...] | KIND/NAME... [-n NAMESPACE | -A] [-l SELECTOR] [-o " + outputFormats + "]"

const knownKinds = "pods (po), deployments (deploy), services (svc), namespaces (ns), secrets, " +
	"and Istio's virtualservices (vs), destinationrules (dr), gateways (gw), serviceentries (se), sidecars, " +
	"peerauthentications (pa), authorizationpolicies (ap), requestauthentications (ra), telemetries (telemetry), or all (every Istio kind)"

func usageErr(format string, a ...any) error {
	return cli.Exit(fmt.Sprintf(format, a...)+"\n"+getUsage, 2)
}

// getKube is get for the Kubernetes kinds a lab runs (pods, deployments,
// services, namespaces), printed as kubectl prints them.
func getKube(c *cli.Context, rt lab.Runtime, req []kindNames, single bool, o getOutput, sel labels.Selector) error {
	ns := c.String("namespace")
	allNS := c.Bool("all-namespaces")
	type group struct {
		k    *kubeKind
		objs []runtime.Object
	}
	var groups []group
	var notFound []string
	var all []runtime.Object
	for _, r := range req {
		k, _ := lookupKubeKind(r.kind)
		listNS := ns
		if allNS || !k.namespaced {
			listNS = ""
		}
		objs, err := k.list(c.Context, rt, listNS)
		if err != nil {
			where := "in namespace " + listNS
			if listNS == "" {
				where = "in every namespace"
			}
			return explain(fmt.Errorf("get %s %s: %w", k.resource, where, err))
		}
		if len(r.names) > 0 {
			byName := map[string]runtime.Object{}
			for _, obj := range objs {
				byName[objectName(obj)] = obj
			}
			objs = objs[:0]
			for _, n := range r.names {
				if obj, ok := byName[n]; ok {
					objs = append(objs, obj)
				} else {
					notFound = append(notFound, fmt.Sprintf("Error from server (NotFound): %s %q not found", k.qualified(), n))
				}
			}
		} else if sel != nil && !sel.Empty() {
			kept := objs[:0]
			for _, obj := range objs {
				if sel.Matches(labels.Set(objectLabels(obj))) {
					kept = append(kept, obj)
				}
			}
			objs = kept
		}
		groups = append(groups, group{k, objs})
		all = append(all, objs...)
	}
	w := c.App.Writer
	failed := func() error {
		if len(notFound) == 0 {
			return nil
		}
		return cli.Exit(strings.Join(notFound, "\n"), 1)
	}

	if o.format != "table" && o.format != "wide" {
		if single && len(all) == 0 {
			return failed() // kubectl prints no empty List for one missing object
		}
		if err := printGeneric(w, o, all, single); err != nil {
			return err
		}
		return failed()
	}

	kinds := 0
	for _, g := range groups {
		if len(g.objs) > 0 {
			kinds++
		}
	}
	tw := &countingWriter{w: w}
	for _, g := range groups {
		if len(g.objs) == 0 {
			continue
		}
		if tw.n > 0 && !c.Bool("no-headers") {
			fmt.Fprintln(w) // kubectl's blank line between two kinds' tables
		}
		err := printTable(tw, g.k, g.objs, tableOptions{
			wide: o.format == "wide", allNamespaces: allNS, withKind: kinds > 1,
			showLabels: c.Bool("show-labels"), noHeaders: c.Bool("no-headers"),
		})
		if err != nil {
			return err
		}
	}
	if tw.n == 0 && len(notFound) == 0 {
		if allNS {
			fmt.Fprintln(c.App.ErrWriter, "No resources found")
		} else {
			fmt.Fprintf(c.App.ErrWriter, "No resources found in %s namespace.\n", ns)
		}
	}
	return failed()
}

// countingWriter tells whether anything was printed, as kubectl's
// "No resources found" needs.
type countingWriter struct {
	w io.Writer
	n int
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n += n
	return n, err
}

func objectName(obj runtime.Object) string {
	if m, ok := obj.(interface{ GetName() string }); ok {
		return m.GetName()
	}
	return ""
}

func objectLabels(obj runtime.Object) map[string]string {
	if m, ok := obj.(interface{ GetLabels() map[string]string }); ok {
		return m.GetLabels()
	}
	return nil
}

// getIstio is get for the Istio kinds the lab stores (and "all" of them),
// through the runtime so that it reads either runtime's store; table, json
// and yaml print as they always have, -o name and jsonpath as kubectl's.
func getIstio(c *cli.Context, rt lab.Runtime, req []kindNames, single bool, o getOutput, sel labels.Selector) error {
	ns := c.String("namespace")
	if c.Bool("all-namespaces") {
		ns = ""
	}
	var list api.ResourceList
	for _, r := range req {
		names := r.names
		if len(names) == 0 {
			names = []string{""}
		}
		for _, n := range names {
			items, err := rt.List(c.Context, r.kind, ns, n)
			if err != nil {
				return explain(fmt.Errorf("get %s: %w", r.kind, err))
			}
			for _, it := range items {
				if sel != nil && !sel.Empty() {
					var obj struct {
						Metadata struct {
							Labels map[string]string `json:"labels"`
						} `json:"metadata"`
					}
					if err := json.Unmarshal(it, &obj); err != nil {
						return fmt.Errorf("decode a stored %s: %w", r.kind, err)
					}
					if !sel.Matches(labels.Set(obj.Metadata.Labels)) {
						continue
					}
				}
				list.Items = append(list.Items, it)
			}
		}
	}
	switch o.format {
	case "table", "wide":
		return printResources(c, "table", list, ns == "")
	case "json", "yaml":
		return printResources(c, o.format, list, ns == "")
	}
	objs := make([]runtime.Object, 0, len(list.Items))
	for i, it := range list.Items {
		obj, err := toUnstructuredJSON(it)
		if err != nil {
			return fmt.Errorf("decode item %d of the list: %w", i, err)
		}
		objs = append(objs, obj)
	}
	return printGeneric(c.App.Writer, o, objs, single)
}

func toUnstructuredJSON(b []byte) (runtime.Object, error) {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	return u, nil
}
