package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbactcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/urfave/cli/v2"
)

// Experimental is `meshlab x`, istioctl's experimental commands.
func Experimental() *cli.Command {
	return &cli.Command{
		Name:    "x",
		Aliases: []string{"experimental"},
		Usage:   "experimental commands, as istioctl x",
		Subcommands: []*cli.Command{{
			Name:        "authz",
			Usage:       "inspect authorization in a proxy",
			Subcommands: []*cli.Command{authzCheck()},
		}},
	}
}

func authzCheck() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "list the AuthorizationPolicies that apply to a pod, as its proxy holds them",
		ArgsUsage: "POD",
		Description: `Reads the proxy's /config_dump (admin port 15000, inside the pod) and lists the
AuthorizationPolicies its RBAC filters enforce, as istioctl x authz check does:
one row per policy with its action and how many of its rules the proxy holds,
DENY first, then ALLOW, then AUDIT (LOG). An ALLOW filter with no policy (an
ALLOW that matches nothing) shows as _anonymous_match_nothing_. Dry-run policies
and CUSTOM rules are shadow rules, which istioctl does not list either.

Examples:
   meshlab x authz check -n foo httpbin
   meshlab x authz check -n istio-system istio-ingressgateway
   meshlab x authz check -n foo deploy/httpbin -o json`,
		Flags: []cli.Flag{namespaceFlag, outputFlag, stateDirFlag},
		Action: func(c *cli.Context) error {
			o, err := checkOutput(c, "table", "json")
			if err != nil {
				return err
			}
			if c.NArg() != 1 {
				return cli.Exit("usage: meshlab x authz check -n NAMESPACE POD", 2)
			}
			_, dump, err := configDumpOf(c, c.Args().First())
			if err != nil {
				return err
			}
			return printAuthzCheck(c.App.Writer, dump, o)
		},
	}
}

// authzRow is one policy the proxy enforces.
type authzRow struct {
	Action              string `json:"action"`
	AuthorizationPolicy string `json:"authorizationPolicy"`
	Rules               int    `json:"rules"`
}

const anonymousMatchNothing = "_anonymous_match_nothing_"

// authzRows is istioctl's printPolicies (istioctl/pkg/authz): the
// enforced rules of every RBAC filter in the listeners, by action and
// policy ("NAME.NAMESPACE" from Istio's "ns[NS]-policy[NAME]-rule[I]"),
// counting distinct rules. meshlab skips filters without enforced rules
// (only shadow ones: dry-run, CUSTOM), which istioctl would show as an
// ALLOW _anonymous_match_nothing_ they are not.
func authzRows(dump *adminv3.ConfigDump) ([]authzRow, error) {
	byAction := map[rbacpb.RBAC_Action]map[string]map[string]bool{}
	add := func(rules *rbacpb.RBAC) {
		if rules == nil {
			return
		}
		a := rules.GetAction()
		if byAction[a] == nil {
			byAction[a] = map[string]map[string]bool{}
		}
		if len(rules.GetPolicies()) == 0 {
			if byAction[a][anonymousMatchNothing] == nil {
				byAction[a][anonymousMatchNothing] = map[string]bool{}
			}
			byAction[a][anonymousMatchNothing]["0"] = true
		}
		for key := range rules.GetPolicies() {
			name, rule := policyOfRule(key)
			if byAction[a][name] == nil {
				byAction[a][name] = map[string]bool{}
			}
			byAction[a][name][rule] = true
		}
	}
	for _, cfg := range dump.GetConfigs() {
		var ld adminv3.ListenersConfigDump
		if !cfg.MessageIs(&ld) {
			continue
		}
		if err := cfg.UnmarshalTo(&ld); err != nil {
			return nil, fmt.Errorf("decode listeners: %w", err)
		}
		for _, dl := range ld.GetDynamicListeners() {
			var l listenerv3.Listener
			if err := dl.GetActiveState().GetListener().UnmarshalTo(&l); err != nil {
				return nil, fmt.Errorf("decode listener %s: %w", dl.GetName(), err)
			}
			for _, fc := range append(l.GetFilterChains(), l.GetDefaultFilterChain()) {
				for _, f := range fc.GetFilters() {
					switch f.GetName() {
					case wellknown.RoleBasedAccessControl:
						var r rbactcp.RBAC
						if err := f.GetTypedConfig().UnmarshalTo(&r); err != nil {
							return nil, fmt.Errorf("listener %s: %w", l.GetName(), err)
						}
						add(r.GetRules())
					case wellknown.HTTPConnectionManager:
						var h hcmv3.HttpConnectionManager
						if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
							return nil, fmt.Errorf("listener %s: %w", l.GetName(), err)
						}
						for _, hf := range h.GetHttpFilters() {
							if hf.GetName() != wellknown.HTTPRoleBasedAccessControl {
								continue
							}
							var r rbachttp.RBAC
							if err := hf.GetTypedConfig().UnmarshalTo(&r); err != nil {
								return nil, fmt.Errorf("listener %s: %w", l.GetName(), err)
							}
							add(r.GetRules())
						}
					}
				}
			}
		}
	}
	var rows []authzRow
	for _, a := range []rbacpb.RBAC_Action{rbacpb.RBAC_DENY, rbacpb.RBAC_ALLOW, rbacpb.RBAC_LOG} {
		var names []string
		for n := range byAction[a] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			rows = append(rows, authzRow{Action: a.String(), AuthorizationPolicy: n, Rules: len(byAction[a][n])})
		}
	}
	return rows, nil
}

// policyOfRule parses Istio's policy name "ns[NS]-policy[NAME]-rule[I]"
// (with the CUSTOM prefix or the bad-CUSTOM suffix around it) into
// "NAME.NS" and I; any other name is kept whole.
func policyOfRule(key string) (string, string) {
	s := strings.TrimPrefix(key, "istio-ext-authz-")
	s = strings.TrimSuffix(s, "-deny-due-to-bad-CUSTOM-action")
	var ns, name, rule string
	if rest, ok := strings.CutPrefix(s, "ns["); ok {
		if ns, rest, ok = strings.Cut(rest, "]-policy["); ok {
			if i := strings.LastIndex(rest, "]-rule["); i >= 0 && strings.HasSuffix(rest, "]") {
				name, rule = rest[:i], rest[i+len("]-rule["):len(rest)-1]
				return name + "." + ns, rule
			}
		}
	}
	return key, ""
}

func printAuthzCheck(out io.Writer, dump *adminv3.ConfigDump, format string) error {
	rows, err := authzRows(dump)
	if err != nil {
		return err
	}
	if format == "json" {
		if rows == nil {
			rows = []authzRow{}
		}
		b, err := json.MarshalIndent(rows, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	w := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "ACTION\tAuthorizationPolicy\tRULES")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%d\n", r.Action, r.AuthorizationPolicy, r.Rules)
	}
	return w.Flush()
}
