package cmd

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// secretRow is one secret as istioctl proxy-config secret shows it
// (istioctl's sdscompare SecretItem).
type secretRow struct {
	Name, Type, State, Serial, NotAfter, NotBefore string
	Valid                                          bool
}

// secretsDump is the SecretsConfigDump of a config dump; nil when none.
func secretsDump(dump *adminv3.ConfigDump) *adminv3.SecretsConfigDump {
	for _, cfg := range dump.GetConfigs() {
		var sd adminv3.SecretsConfigDump
		if cfg.MessageIs(&sd) && cfg.UnmarshalTo(&sd) == nil {
			return &sd
		}
	}
	return nil
}

// secretRows are the warming then the active secrets, as istioctl lists
// them: the first certificate of the chain (or of the trusted CA bundle)
// gives the type (CA or Cert Chain), serial and validity at now.
func secretRows(sd *adminv3.SecretsConfigDump, now time.Time) []secretRow {
	var rows []secretRow
	add := func(ds *adminv3.SecretsConfigDump_DynamicSecret, state string) {
		r := secretRow{Name: ds.GetName(), State: state}
		// As istioctl: an active secret Envoy never got is UNINITIALIZED;
		// a warming one stays WARMING.
		if state == "ACTIVE" && ds.GetVersionInfo() == "uninitialized" {
			r.State = "UNINITIALIZED"
		}
		var s tlsv3.Secret
		if ds.GetSecret().UnmarshalTo(&s) == nil {
			data := s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
			if len(data) == 0 {
				data = s.GetValidationContext().GetTrustedCa().GetInlineBytes()
			}
			if b, _ := pem.Decode(data); b != nil {
				if c, err := x509.ParseCertificate(b.Bytes); err == nil {
					r.Type = "Cert Chain"
					if c.IsCA {
						r.Type = "CA"
					}
					r.Serial = c.SerialNumber.String()
					r.NotAfter = c.NotAfter.UTC().Format(time.RFC3339)
					r.NotBefore = c.NotBefore.UTC().Format(time.RFC3339)
					r.Valid = now.After(c.NotBefore) && now.Before(c.NotAfter)
				}
			}
		}
		rows = append(rows, r)
	}
	for _, ds := range sd.GetDynamicWarmingSecrets() {
		add(ds, "WARMING")
	}
	for _, ds := range sd.GetDynamicActiveSecrets() {
		add(ds, "ACTIVE")
	}
	return rows
}

// printSecrets writes istioctl's table: its columns and its tabwriter
// settings (padding 5).
func printSecrets(out io.Writer, dump *adminv3.ConfigDump, now time.Time) error {
	rows := secretRows(secretsDump(dump), now)
	if len(rows) == 0 {
		_, err := fmt.Fprintln(out, "No secret items to show.")
		return err
	}
	w := tabwriter.NewWriter(out, 0, 5, 5, ' ', 0)
	fmt.Fprintln(w, strings.Join([]string{"RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE"}, "\t"))
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%t\t%s\t%s\t%s\n", r.Name, r.Type, r.State, r.Valid, r.Serial, r.NotAfter, r.NotBefore)
	}
	return w.Flush()
}

// printSecretsJSON writes the SecretsConfigDump, as istioctl -o json.
func printSecretsJSON(out io.Writer, dump *adminv3.ConfigDump) error {
	sd := secretsDump(dump)
	if sd == nil {
		sd = &adminv3.SecretsConfigDump{}
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(sd)
	if err != nil {
		return fmt.Errorf("encode the secrets: %w", err)
	}
	_, err = out.Write(append(b, '\n'))
	return err
}
