package capture

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/urfave/cli/v2"
)

// Command is `meshlab init-redirect`, what a pod's istio-init container runs:
// it programs capture in the network namespace it was started in.
func Command() *cli.Command {
	d := DefaultOptions()
	return &cli.Command{
		Name:  "init-redirect",
		Usage: "program traffic capture (nftables) in the current network namespace",
		Description: `Installs the nftables table "meshlab" in the network namespace this process
runs in: outbound TCP goes to the proxy's outbound port, inbound TCP to its
inbound port, DNS (UDP and TCP port 53) to its DNS port; traffic of the
proxy's uid and to 127.0.0.0/8 is left alone. Running it again replaces the
rules. Needs CAP_NET_ADMIN in that namespace.

Example (what the local runtime's istio-init runs inside each pod):

   meshlab init-redirect --proxy-uid 1337 --outbound-port 15001 \
     --inbound-port 15006 --dns-port 15053 --exclude-inbound-ports 15090,15021

   meshlab init-redirect --remove     # take capture out again`,
		Flags: []cli.Flag{
			&cli.UintFlag{Name: "proxy-uid", Value: uint(d.ProxyUID), Usage: "uid whose traffic is never captured (the proxy's)"},
			&cli.UintFlag{Name: "outbound-port", Value: uint(d.OutboundPort), Usage: "port receiving captured outbound TCP"},
			&cli.UintFlag{Name: "inbound-port", Value: uint(d.InboundPort), Usage: "port receiving captured inbound TCP"},
			&cli.UintFlag{Name: "dns-port", Value: uint(d.DNSPort), Usage: "port receiving captured DNS (UDP and TCP 53)"},
			&cli.UintSliceFlag{Name: "exclude-inbound-ports", Value: cli.NewUintSlice(toUints(d.ExcludeInboundPorts)...),
				Usage: "inbound TCP ports that are not captured (comma separated)"},
			&cli.StringSliceFlag{Name: "exclude-outbound-cidrs", Usage: "IPv4 destinations that are not captured (comma separated)"},
			&cli.BoolFlag{Name: "remove", Usage: "delete the capture table instead of installing it"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("remove") {
				return Remove()
			}
			opts, err := optionsFromFlags(c)
			if err != nil {
				return err
			}
			if err := Install(opts); err != nil {
				return err
			}
			slog.Info("capture installed", "outbound", opts.OutboundPort, "inbound", opts.InboundPort,
				"dns", opts.DNSPort, "proxyUID", opts.ProxyUID)
			return nil
		},
	}
}

func optionsFromFlags(c *cli.Context) (Options, error) {
	var o Options
	uid := c.Uint("proxy-uid")
	if uint64(uid) > 1<<32-1 {
		return o, fmt.Errorf("--proxy-uid %d: out of range", uid)
	}
	o.ProxyUID = uint32(uid)
	for _, f := range []struct {
		name string
		dst  *uint16
	}{{"outbound-port", &o.OutboundPort}, {"inbound-port", &o.InboundPort}, {"dns-port", &o.DNSPort}} {
		p, err := port(f.name, c.Uint(f.name))
		if err != nil {
			return o, err
		}
		*f.dst = p
	}
	for _, v := range c.UintSlice("exclude-inbound-ports") {
		p, err := port("exclude-inbound-ports", v)
		if err != nil {
			return o, err
		}
		o.ExcludeInboundPorts = append(o.ExcludeInboundPorts, p)
	}
	for _, s := range c.StringSlice("exclude-outbound-cidrs") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return o, fmt.Errorf("--exclude-outbound-cidrs %q: %w", s, err)
		}
		o.ExcludeOutboundCIDRs = append(o.ExcludeOutboundCIDRs, p)
	}
	return o, o.validate()
}

func port(flag string, v uint) (uint16, error) {
	if v == 0 || v > 65535 {
		return 0, fmt.Errorf("--%s %d: not a port", flag, v)
	}
	return uint16(v), nil
}

func toUints(ps []uint16) []uint {
	out := make([]uint, len(ps))
	for i, p := range ps {
		out[i] = uint(p)
	}
	return out
}
