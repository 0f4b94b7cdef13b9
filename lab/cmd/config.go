package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane/analyze"
	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/lab"
)

var filesFlag = &cli.StringSliceFlag{Name: "filename", Aliases: []string{"f"}, Usage: "file, directory (its .yaml/.yml/.json files) or - for stdin; repeatable", Required: true}

// inputFiles expands the -f arguments: files, the .yaml/.yml/.json files of
// directories, and - for stdin.
func inputFiles(c *cli.Context) ([]string, error) {
	var files []string
	for _, f := range c.StringSlice("filename") {
		if f == "-" {
			files = append(files, f)
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		if !fi.IsDir() {
			files = append(files, f)
			continue
		}
		entries, err := os.ReadDir(f)
		if err != nil {
			return nil, fmt.Errorf("read directory %s: %w", f, err)
		}
		for _, e := range entries {
			switch filepath.Ext(e.Name()) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() {
					files = append(files, filepath.Join(f, e.Name()))
				}
			}
		}
	}
	return files, nil
}

// readDocuments reads every -f argument into API documents. Every error of
// every file is reported; nothing is returned if any is bad.
func readDocuments(c *cli.Context) ([]api.Document, error) {
	files, err := inputFiles(c)
	if err != nil {
		return nil, err
	}
	var docs []api.Document
	var errs []error
	for _, f := range files {
		data, err := readInput(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d, err := api.Documents(f, data, c.String("namespace"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		docs = append(docs, d...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return docs, nil
}

// readInput reads one -f argument ("-" is stdin), refusing one larger than
// the API takes in a request before reading or parsing it: it could never
// be applied, and parsing a huge file costs many times its size.
func readInput(name string) ([]byte, error) {
	tooLarge := func() error {
		return fmt.Errorf("%s: larger than %d MiB, the most the control plane API takes in one apply (as the Kubernetes API); split it", name, api.MaxRequestBytes>>20)
	}
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		defer func() { _ = f.Close() }() // read only: nothing to lose
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > api.MaxRequestBytes {
			return nil, tooLarge()
		}
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, api.MaxRequestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > api.MaxRequestBytes {
		return nil, tooLarge()
	}
	return data, nil
}

func printResult(c *cli.Context, res lab.ApplyResult, dry bool) {
	for _, w := range res.Warnings {
		fmt.Fprintf(c.App.ErrWriter, "Warning: %s\n", w)
	}
	for _, ch := range res.Changes {
		suffix := ""
		if dry {
			suffix = " (dry run)"
		}
		// As kubectl names them: service/x for the core group, else
		// deployment.apps/x, virtualservice.networking.istio.io/x.
		what := strings.ToLower(ch.Ref.Kind)
		if ch.Ref.Group != "" {
			what += "." + ch.Ref.Group
		}
		where := ""
		if ch.Ref.Namespace != "" { // cluster-scoped kinds have none
			where = " (namespace " + ch.Ref.Namespace + ")"
		}
		fmt.Fprintf(c.App.Writer, "%s/%s %s%s%s\n", what, ch.Ref.Name, ch.Op, suffix, where)
	}
}

// labDocuments are the API's documents as a runtime takes them.
func labDocuments(docs []api.Document) []lab.Document {
	out := make([]lab.Document, len(docs))
	for i, d := range docs {
		out[i] = lab.Document{Source: d.Source, Index: d.Index, JSON: d.Object}
	}
	return out
}

// Apply is `meshlab apply`.
func Apply() *cli.Command {
	return &cli.Command{
		Name:  "apply",
		Usage: "validate Istio resources and Kubernetes workloads and store them, all or nothing, then run and push them",
		Description: `Takes the same YAML as kubectl apply with Istio's CRDs: VirtualService,
DestinationRule, Gateway, ServiceEntry, Sidecar, PeerAuthentication,
AuthorizationPolicy, RequestAuthentication, in networking.istio.io and
security.istio.io v1, v1beta1 and v1alpha3; Telemetry in telemetry.istio.io
v1 and v1alpha1; and Kubernetes' Namespace,
ServiceAccount, Service, ConfigMap, Secret (v1) and Deployment (apps/v1),
checked as the API server checks them and run by the lab (docs/sandbox.md).
If any document is invalid, nothing is stored and every error names its
file, document and field.

Examples:
   meshlab apply -f samples/bookinfo/networking/virtual-service-all-v1.yaml
   meshlab apply -n foo -f samples/sleep/sleep.yaml -f samples/httpbin/httpbin.yaml
   meshlab apply -f samples/bookinfo/networking/ -n book-demo
   cat vs.yaml | meshlab apply -f -
   meshlab apply -f vs.yaml --wait     # return once the proxies it changes have ACKed it`,
		Flags: []cli.Flag{filesFlag, namespaceFlag, stateDirFlag, cpFlag, tokenFlag,
			&cli.BoolFlag{Name: "dry-run", Usage: "validate on the control plane, store nothing"},
			&cli.BoolFlag{Name: "wait", Usage: "wait until every proxy whose configuration this changes has ACKed it; fail naming those that NACK it or stay silent"}},
		Action: func(c *cli.Context) error {
			docs, err := readDocuments(c)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			rt, err := openRuntime(c)
			if err != nil {
				return err
			}
			res, err := rt.Apply(c.Context, lab.ApplyRequest{Documents: labDocuments(docs), Namespace: c.String("namespace"), DryRun: c.Bool("dry-run")})
			if err != nil {
				return explain(err)
			}
			printResult(c, res, c.Bool("dry-run"))
			if c.Bool("wait") && !c.Bool("dry-run") {
				cl, err := client(c)
				if err != nil {
					return err
				}
				return explain(cl.WaitSynced(c.Context, res.Revision))
			}
			return nil
		},
	}
}

// Delete is `meshlab delete`.
func Delete() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete Istio resources and Kubernetes objects by file or by kind and name, all or nothing",
		ArgsUsage: "[KIND NAME...]",
		Description: `Deleting a Namespace deletes what is in it, as in Kubernetes.

Examples:
   meshlab delete -f samples/bookinfo/networking/virtual-service-all-v1.yaml
   meshlab delete virtualservice reviews -n default
   meshlab delete vs reviews ratings
   meshlab delete -n foo -f samples/httpbin/httpbin.yaml
   meshlab delete deployment httpbin -n foo
   meshlab delete namespace legacy`,
		Flags: []cli.Flag{&cli.StringSliceFlag{Name: "filename", Aliases: []string{"f"}, Usage: "file, directory or -"}, namespaceFlag, stateDirFlag, cpFlag, tokenFlag},
		Action: func(c *cli.Context) error {
			var refs []lab.ObjectRef
			if len(c.StringSlice("filename")) > 0 {
				docs, err := readDocuments(c)
				if err != nil {
					return cli.Exit(err.Error(), 1)
				}
				for _, d := range docs {
					r, err := config.Unmarshal(d.Object)
					if err != nil {
						return err
					}
					refs = append(refs, lab.RefOfKey(r.Key()))
				}
			} else {
				if isSecretKind(c.Args().First()) {
					return deleteSecrets(c) // secret.go
				}
				if c.NArg() < 2 {
					return cli.Exit("usage: meshlab delete -f FILE, or meshlab delete KIND NAME... [-n NAMESPACE]", 2)
				}
				info, ok := config.LookupStoredKind(c.Args().First())
				if !ok {
					return cli.Exit(fmt.Sprintf("unknown kind %q", c.Args().First()), 2)
				}
				ns := c.String("namespace")
				if info.ClusterScoped {
					ns = ""
				}
				for _, n := range c.Args().Slice()[1:] {
					refs = append(refs, lab.ObjectRef{Group: info.Group, Kind: string(info.Kind), Namespace: ns, Name: n})
				}
			}
			rt, err := openRuntime(c)
			if err != nil {
				return err
			}
			res, err := rt.Delete(c.Context, refs)
			if err != nil {
				return explain(err)
			}
			printResult(c, res, false)
			return nil
		},
	}
}

// Get is `meshlab get`.
func Get() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "list the lab's pods, deployments, services and namespaces as kubectl does, and its stored Istio resources",
		ArgsUsage: "KIND[,KIND...] [NAME...] | KIND/NAME...",
		Description: `KIND is pods (po), deployments (deploy), services (svc) or namespaces (ns),
printed with kubectl's columns; secrets; or an Istio kind, its plural or short
name (virtualservices, vs, dr, gw, se, pa, ap, ...) or all (every Istio kind).
The same on the local runtime and on a kind cluster.

Examples:
   meshlab get pods -n default
   meshlab get pods -A -o wide
   meshlab get deploy,svc -n foo
   meshlab get pod/details-v1-6d7f9c8b5-abcde -o jsonpath='{.spec.containers[*].ports[*].name}'
   meshlab get pods -l app=ratings -o jsonpath='{.items[0].metadata.name}'
   meshlab get svc productpage -o yaml
   meshlab get virtualservices -n default
   meshlab get vs reviews -o yaml
   meshlab get destinationrules -A -o json`,
		Flags: []cli.Flag{namespaceFlag, getOutputFlag, selectorFlag, allNamespacesFlag, showLabelsFlag, noHeadersFlag,
			stateDirFlag, cpFlag, tokenFlag},
		OnUsageError: flagUsageError(getUsage),
		Action: func(c *cli.Context) error {
			o, err := parseOutput(c.String("output"))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			if c.NArg() < 1 {
				return usageErr("name a kind: %s", knownKinds)
			}
			kind := c.Args().Get(0)
			if isSecretKind(kind) {
				ns := secretsNamespace(c)
				if c.Bool("all-namespaces") {
					ns = ""
				}
				switch o.format {
				case "table", "json", "yaml":
				default:
					return cli.Exit(fmt.Sprintf("--output %q: secrets print as table, json or yaml", c.String("output")), 2)
				}
				return getSecrets(c, o.format, ns) // secret.go
			}
			req, single, err := parseGetArgs(c.Args().Slice())
			if err != nil {
				return usageErr("%v", err)
			}
			var kube, istio int
			for _, r := range req {
				switch _, ok := lookupKubeKind(r.kind); {
				case isSecretKind(r.kind):
					return usageErr("secrets are listed alone: meshlab get secrets [NAME] [-n NAMESPACE]")
				case ok:
					kube++
				case r.kind == "all":
					istio++
				default:
					// Istio's kinds, and the other Kubernetes kinds the
					// lab stores (configmaps, serviceaccounts).
					if _, ok := config.LookupStoredKind(r.kind); !ok {
						return usageErr("unknown kind %q; meshlab get takes %s", r.kind, knownKinds)
					}
					istio++
				}
			}
			if kube > 0 && istio > 0 {
				return usageErr("get Kubernetes kinds and Istio kinds in two commands")
			}
			var sel labels.Selector
			if s := c.String("selector"); s != "" {
				if sel, err = labels.Parse(s); err != nil {
					return usageErr("--selector %q: %v; e.g. -l app=productpage", s, err)
				}
				if namesObjects(c) {
					return usageErr("--selector picks objects by label; name them or select them, not both")
				}
			}
			if c.Bool("all-namespaces") && namesObjects(c) && kube > 0 {
				return usageErr("a resource cannot be retrieved by name across all namespaces; give its namespace with -n")
			}
			rt, err := openRuntime(c)
			if err != nil {
				return err
			}
			if kube > 0 {
				return getKube(c, rt, req, single, o, sel) // get.go
			}
			return getIstio(c, rt, req, single, o, sel) // get.go
		},
	}
}

func printResources(c *cli.Context, o string, list api.ResourceList, allNS bool) error {
	w := c.App.Writer
	single := namesObjects(c) && len(list.Items) == 1
	switch o {
	case "json":
		if single {
			_, err := w.Write(append(indentJSON(list.Items[0]), '\n'))
			return err
		}
		return writeJSON(w, map[string]any{"apiVersion": "v1", "kind": "List", "items": list.Items})
	case "yaml":
		for i, it := range list.Items {
			if i > 0 {
				fmt.Fprintln(w, "---")
			}
			b, err := yaml.JSONToYAML(it)
			if err != nil {
				return err
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	}
	if len(list.Items) == 0 {
		fmt.Fprintln(c.App.ErrWriter, "No resources found.")
		return nil
	}
	type row struct{ kind, ns, name, detail string }
	var rows []row
	for i, it := range list.Items {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name, Namespace string
			} `json:"metadata"`
			Spec struct {
				Hosts    []string `json:"hosts"`
				Gateways []string `json:"gateways"`
				Host     string   `json:"host"`
			} `json:"spec"`
		}
		// A resource that does not decode would print as a blank or partial
		// row, which reads as a real object: refuse the list instead.
		if err := json.Unmarshal(it, &obj); err != nil {
			return fmt.Errorf("decode item %d of the list: %w", i, err)
		}
		var d []string
		if len(obj.Spec.Gateways) > 0 {
			d = append(d, `["`+strings.Join(obj.Spec.Gateways, `","`)+`"]`)
		}
		if len(obj.Spec.Hosts) > 0 {
			d = append(d, `["`+strings.Join(obj.Spec.Hosts, `","`)+`"]`)
		}
		if obj.Spec.Host != "" {
			d = append(d, obj.Spec.Host)
		}
		rows = append(rows, row{obj.Kind, obj.Metadata.Namespace, obj.Metadata.Name, strings.Join(d, "   ")})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].kind < rows[j].kind })
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	last := ""
	for _, r := range rows {
		if r.kind != last {
			if last != "" {
				fmt.Fprintln(tw)
			}
			if allNS {
				fmt.Fprint(tw, "NAMESPACE\t")
			}
			fmt.Fprintln(tw, "NAME\tKIND\tGATEWAYS / HOSTS")
			last = r.kind
		}
		if allNS {
			fmt.Fprint(tw, r.ns+"\t")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.name, r.kind, r.detail)
	}
	return tw.Flush()
}

func indentJSON(b []byte) []byte {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return b
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	return out
}

// Analyze is `meshlab analyze`.
func Analyze() *cli.Command {
	return &cli.Command{
		Name:  "analyze",
		Usage: "find problems in Istio configuration, as istioctl analyze does, without storing it",
		Description: `Checks files the way apply does (schema: every error names its file, document
and field) and then across resources, with Istio's message codes:

   IST0101 ReferencedResourceNotFound   a route to a subset no DestinationRule defines,
                                        a destination host no Service or ServiceEntry has,
                                        a gateway that does not exist
   IST0106 SchemaValidationError        schema errors; route weights that do not add up to 100
   IST0109 ConflictingMeshGatewayVirtualServiceHosts  two mesh VirtualServices for one host
   IST0112 VirtualServiceDestinationPortSelectorRequired
   IST0132 VirtualServiceHostNotFoundInGateway
   IST0173 DestinationRuleSubsetNotSelectPods
   MLB0001 two VirtualServices for one host on one gateway (warning)
   MLB0002 a mesh VirtualService for a host nothing serves (warning)

When a lab's control plane answers, the files are analyzed together with its
registry (Services, pods) and its stored configuration, a file's resource
replacing the stored one of the same kind, namespace and name; otherwise the
files alone are analyzed, Kubernetes Services and Deployments in them standing
in for the registry. Exits 1 when there is an error, 0 when there are only
warnings or info.

Examples:
   meshlab analyze -f samples/bookinfo/networking/
   meshlab analyze -f my-virtualservice.yaml -o json
   meshlab analyze -f samples/bookinfo/bookinfo.yaml -f vs.yaml --offline`,
		Flags: []cli.Flag{filesFlag, namespaceFlag, stateDirFlag, cpFlag, tokenFlag,
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "output format: text or json"},
			&cli.BoolFlag{Name: "offline", Usage: "analyze the files alone, even when a lab is running"}},
		Action: func(c *cli.Context) error {
			o, err := checkOutput(c, "text", "json")
			if err != nil {
				return err
			}
			names, err := inputFiles(c)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			var files analyze.Files
			for _, f := range names {
				var data []byte
				if f == "-" {
					data, err = io.ReadAll(os.Stdin)
				} else {
					data, err = os.ReadFile(f)
				}
				if err != nil {
					return cli.Exit(fmt.Sprintf("read %s: %v", f, err), 1)
				}
				files.Add(f, data, c.String("namespace"))
			}
			in := analyze.Input{Resources: files.Resources, Services: files.Services, Workloads: files.Workloads,
				Origins: files.Origins, Lines: files.Lines}
			what := fmt.Sprintf("%d document(s)", files.Documents)
			if !c.Bool("offline") {
				live, err := liveInput(c, files)
				switch {
				case errors.Is(err, api.ErrUnreachable):
					// No lab: the files are all there is, as with istioctl analyze --use-kube=false.
				case err != nil:
					return explain(err)
				default:
					in = live
					what += " with the running lab's configuration"
				}
			}
			msgs := append(files.Schema, analyze.Run(in)...)
			if o == "json" {
				if msgs == nil {
					msgs = []analyze.Message{}
				}
				if err := writeJSON(c.App.Writer, msgs); err != nil {
					return err
				}
			} else {
				if len(msgs) == 0 {
					fmt.Fprintf(c.App.Writer, "✔ No validation issues found when analyzing %s.\n", what)
				}
				for _, m := range msgs {
					fmt.Fprintln(c.App.Writer, m)
				}
			}
			if lvl, ok := analyze.Worst(msgs); ok && lvl == analyze.Error {
				return cli.Exit(fmt.Sprintf("Error: Analyzers found issues when analyzing %s.\nSee https://istio.io/latest/docs/reference/config/analysis for more information about causing any of these issues.", what), 1)
			}
			return nil
		},
	}
}

// liveInput puts the files over the running lab's stored configuration and
// registry. It fails with api.ErrUnreachable when no control plane answers.
func liveInput(c *cli.Context, files analyze.Files) (analyze.Input, error) {
	cl, err := client(c)
	if err != nil {
		return analyze.Input{}, err
	}
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
	defer cancel()
	reg, err := cl.Registry(ctx)
	if err != nil {
		return analyze.Input{}, err
	}
	list, err := cl.List(ctx, "", "", "")
	if err != nil {
		return analyze.Input{}, err
	}
	stored := make([]config.Resource, 0, len(list.Items))
	for _, it := range list.Items {
		r, err := config.Unmarshal(it)
		if err != nil {
			return analyze.Input{}, fmt.Errorf("read stored resource: %w", err)
		}
		stored = append(stored, r)
	}
	services := reg.Services
	known := map[string]bool{}
	for _, s := range services {
		known[s.Key()] = true
	}
	for _, s := range files.Services {
		if !known[s.Key()] {
			services = append(services, s)
		}
	}
	return analyze.Input{
		Resources: analyze.Overlay(stored, files.Resources),
		Services:  services,
		Workloads: append(reg.Workloads, files.Workloads...),
		Complete:  true,
		Origins:   files.Origins,
		Lines:     files.Lines,
	}, nil
}
