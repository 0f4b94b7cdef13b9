// Package capture owns traffic capture inside a pod's network namespace: the
// nftables rules that send the pod's outbound TCP to the sidecar's 15001,
// inbound TCP to 15006 and DNS to 15053 (the proxy's own traffic, by uid,
// exempt), and reading a captured connection's original destination. For
// a pod without a sidecar, InstallDNS sends its DNS to the cluster DNS
// instead, whatever resolver the host's resolv.conf names, and
// InstallServices takes kube-proxy's part for Service VIPs.
package capture
