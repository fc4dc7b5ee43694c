package notify

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrForbiddenAddress is returned (wrapped) when a callback URL leads to an address of a denied
// network. It is never retried: the same URL leads there again.
var ErrForbiddenAddress = errors.New("callback address is in a denied network")

// DefaultCallbackDeny are the networks a job's callback URL may not reach unless the operator
// says otherwise (OMNI_NOTIFY_CALLBACK_DENY): the function's own pod (loopback: sidecar admin
// ports), link-local (169.254.169.254 is the metadata service of most clouds), the unspecified
// addresses (which reach the local host), and the metadata addresses of Alibaba Cloud and AWS
// over IPv6. Private networks are allowed: webhooks often live there.
var DefaultCallbackDeny = []string{
	"127.0.0.0/8", "::1/128",
	"169.254.0.0/16", "fe80::/10",
	"0.0.0.0/8", "::/128",
	"100.100.100.200/32", "fd00:ec2::254/128",
}

// Networks is a list of denied networks.
type Networks []netip.Prefix

// ParseNetworks parses CIDRs (or single addresses); blanks are skipped.
func ParseNetworks(list []string) (Networks, error) {
	var out Networks
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("network %q: %w", s, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Contains reports whether a is in one of the networks; IPv4-mapped IPv6 addresses count as
// their IPv4 address.
func (n Networks) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range n {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// WithoutLoopback returns list without the loopback networks (the local all-in-one, whose
// receivers run on the same machine).
func WithoutLoopback(list []string) []string {
	var out []string
	for _, s := range list {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && p.Addr().IsLoopback() {
			continue
		}
		out = append(out, s)
	}
	return out
}

// control is a net.Dialer Control function that refuses addresses in n. It runs after name
// resolution, on the very address about to be connected, so a name that resolves to a denied
// address (DNS rebinding included) is refused too.
func (n Networks) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("callback address %q: %w", address, err)
	}
	if n.Contains(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
	}
	return nil
}

// dialer returns a dialer that refuses the networks n.
func (n Networks) dialer() *net.Dialer {
	d := &net.Dialer{}
	if len(n) > 0 {
		d.Control = n.control
	}
	return d
}
