package cmd

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/controlplane/api"
)

// What this file adds: TLS secrets for Gateways' credentialName, stored by
// the control plane and served to gateways over SDS, made and removed as
// kubectl does (`kubectl create secret tls`, `kubectl delete secret`).

// secretNamespace is where the lab's ingress gateway runs, and so where
// its credentialName secrets must be.
const secretNamespace = "istio-system"

// Create is `meshlab create secret tls NAME --cert FILE --key FILE`.
func Create() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "create a TLS secret for a Gateway's credentialName, as kubectl create secret tls",
		ArgsUsage: "secret tls NAME",
		Description: `The secret is kept by the control plane and served to the gateway over SDS
as kubernetes://NAME; ca.crt (--ca) serves MUTUAL's NAME-cacert. Replacing
a secret rotates the certificate the gateway serves.

Examples:
   meshlab create secret tls httpbin-credential --cert example.com.crt --key example.com.key
   meshlab create secret tls httpbin-credential -n istio-system --cert c.crt --key c.key --ca ca.crt`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cert", Usage: "PEM certificate chain file (tls.crt)", Required: true},
			&cli.StringFlag{Name: "key", Usage: "PEM private key file (tls.key)", Required: true},
			&cli.StringFlag{Name: "ca", Usage: "PEM CA certificates file (ca.crt) to verify clients, for MUTUAL"},
			&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Value: secretNamespace, Usage: "namespace (the gateway's)"},
			stateDirFlag, cpFlag, tokenFlag,
		},
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			if len(args) != 3 || args[0] != "secret" || args[1] != "tls" {
				return cli.Exit("usage: meshlab create secret tls NAME --cert FILE --key FILE [--ca FILE] [-n NAMESPACE]", 2)
			}
			s := api.Secret{Namespace: c.String("namespace"), Name: args[2], Type: api.SecretTypeTLS}
			var err error
			if s.Cert, err = os.ReadFile(c.String("cert")); err != nil {
				return cli.Exit(fmt.Sprintf("read --cert: %v", err), 1)
			}
			if s.Key, err = os.ReadFile(c.String("key")); err != nil {
				return cli.Exit(fmt.Sprintf("read --key: %v", err), 1)
			}
			if f := c.String("ca"); f != "" {
				if s.CA, err = os.ReadFile(f); err != nil {
					return cli.Exit(fmt.Sprintf("read --ca: %v", err), 1)
				}
			}
			cl, err := client(c)
			if err != nil {
				return err
			}
			if _, err := cl.PutSecret(c.Context, s); err != nil {
				return explain(err)
			}
			fmt.Fprintf(c.App.Writer, "secret/%s created\n", s.Name)
			return nil
		},
	}
}

// isSecretKind reports whether a get or delete KIND names secrets.
func isSecretKind(kind string) bool {
	switch strings.ToLower(kind) {
	case "secret", "secrets":
		return true
	}
	return false
}

// secretsNamespace is -n, or the gateway's namespace when -n is not
// given: secrets are only of use there.
func secretsNamespace(c *cli.Context) string {
	if c.IsSet("namespace") {
		return c.String("namespace")
	}
	return secretNamespace
}

// deleteSecrets is `meshlab delete secret NAME...`.
func deleteSecrets(c *cli.Context) error {
	names := c.Args().Slice()[1:]
	if len(names) == 0 {
		return cli.Exit("usage: meshlab delete secret NAME... [-n NAMESPACE (default istio-system)]", 2)
	}
	cl, err := client(c)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := cl.DeleteSecret(c.Context, secretsNamespace(c), n); err != nil {
			return explain(err)
		}
		fmt.Fprintf(c.App.Writer, "secret %q deleted\n", n)
	}
	return nil
}

// getSecrets is `meshlab get secrets [NAME]`: what each holds and its
// certificate, never the key (kubectl describe's view, not get -o yaml's).
func getSecrets(c *cli.Context, o, ns string) error {
	cl, err := client(c)
	if err != nil {
		return err
	}
	list, err := cl.Secrets(c.Context, ns)
	if err != nil {
		return explain(err)
	}
	if name := c.Args().Get(1); name != "" {
		var one []api.SecretInfo
		for _, s := range list {
			if s.Name == name {
				one = append(one, s)
			}
		}
		if len(one) == 0 {
			return cli.Exit(fmt.Sprintf("secret %q not found", name), 1)
		}
		list = one
	}
	if o != "table" {
		return writeJSON(c.App.Writer, list)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 8, 3, ' ', 0)
	if ns == "" {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "NAME\tTYPE\tDATA\tHOSTS\tNOT AFTER\tAGE")
	for _, s := range list {
		if ns == "" {
			fmt.Fprintf(tw, "%s\t", s.Namespace)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.Name, s.Type, len(s.Keys), strings.Join(s.DNSNames, ","),
			s.NotAfter.Format(time.RFC3339), time.Since(s.Created).Round(time.Second))
	}
	return tw.Flush()
}
