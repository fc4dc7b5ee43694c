// Package callback guards the URLs a submitter chooses for notify to call (jobs' callback
// URLs): one Guard checks them at submit (so a bad URL is a 400 naming the field) and again at
// connect time in notify's dialer, on the very address about to be connected (so a name that
// resolves to a denied address, DNS rebinding included, is refused too). See docs/security.md.
package callback

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// ErrForbidden is returned (wrapped) when a callback URL leads to a denied address or host. It
// is never retried: the same URL leads there again.
var ErrForbidden = errors.New("callback address is in a denied network")

// DefaultDeny are the networks a callback URL may not reach unless the operator says otherwise:
// loopback (the function's own pod, sidecar admin ports), the unspecified addresses (which
// reach the local host), the private networks (the cluster's pods, nodes and functions), shared
// address space (100.100.100.200 is Alibaba Cloud's metadata service), link-local
// (169.254.169.254 is the metadata service of most clouds), multicast and reserved ranges, and
// the IPv6 forms that embed an IPv4 address (NAT64, 6to4).
var DefaultDeny = []string{
	"127.0.0.0/8", "::1/128",
	"0.0.0.0/8", "::/128",
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7",
	"100.64.0.0/10",
	"169.254.0.0/16", "fe80::/10", "fec0::/10",
	"192.0.0.0/24", "198.18.0.0/15",
	"224.0.0.0/4", "240.0.0.0/4", "ff00::/8",
	"64:ff9b::/96", "64:ff9b:1::/48", "2002::/16",
}

// DefaultDenyHosts are the host names a callback URL may not name: the local host, and the
// cluster's own names (the functions are Services of the cluster). A leading dot denies every
// name under that domain. Names of a single label are always refused (in a pod they resolve
// through the search domains to the namespace's Services: `notify` is the notify function).
var DefaultDenyHosts = []string{"localhost", ".localhost", ".local", ".internal", ".svc", ".cluster.local"}

// GuardEnv are the settings of the callback guard, shared by submit (validation) and notify
// (connect). Each field names its variable and default.
type GuardEnv struct {
	// Deny are the networks (CIDRs or addresses, comma-separated) callback URLs may not reach.
	// Default DefaultDeny; set it empty to allow every address (not advised).
	Deny []string `envconfig:"OMNI_CALLBACK_DENY" default:"127.0.0.0/8,::1/128,0.0.0.0/8,::/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7,100.64.0.0/10,169.254.0.0/16,fe80::/10,fec0::/10,192.0.0.0/24,198.18.0.0/15,224.0.0.0/4,240.0.0.0/4,ff00::/8,64:ff9b::/96,64:ff9b:1::/48,2002::/16"`
	// ServiceCIDR are the cluster's Service networks (denied as well; they hold the functions'
	// and the Broker's addresses). Default 10.96.0.0/12, Kubernetes' default.
	ServiceCIDR []string `envconfig:"OMNI_CALLBACK_SERVICE_CIDR" default:"10.96.0.0/12"`
	// DenyHosts are host names (exact, or ".domain" for every name under it) callback URLs may
	// not name: add the API's own public host names here. Default DefaultDenyHosts.
	DenyHosts []string `envconfig:"OMNI_CALLBACK_DENY_HOSTS" default:"localhost,.localhost,.local,.internal,.svc,.cluster.local"`
}

// Guard decides which callback URLs and addresses may be called. The zero value allows
// everything but still refuses malformed, zoned and non-canonical numeric hosts.
type Guard struct {
	deny  []netip.Prefix
	hosts []string
	// self are the listen addresses of the process itself (the local all-in-one), refused even
	// when their network is allowed; a self entry with an unspecified address stands for every
	// local address with that port.
	self []netip.AddrPort
}

// Guard builds the guard e describes.
func (e GuardEnv) Guard() (*Guard, error) {
	g, err := New(append(append([]string(nil), e.Deny...), e.ServiceCIDR...), e.DenyHosts)
	if err != nil {
		return nil, fmt.Errorf("callback guard: %w", err)
	}
	return g, nil
}

// New returns a guard refusing the networks deny (CIDRs or single addresses; blanks skipped)
// and the host names hosts.
func New(deny, hosts []string) (*Guard, error) {
	g := &Guard{}
	for _, s := range deny {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("network %q: %w", s, err)
			}
			g.deny = append(g.deny, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", s, err)
		}
		g.deny = append(g.deny, p.Masked())
	}
	for _, h := range hosts {
		if h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), "."); h != "" {
			g.hosts = append(g.hosts, h)
		}
	}
	return g, nil
}

// WithoutLoopback returns a copy of g that allows loopback addresses and the name localhost
// (the local all-in-one, whose receivers run on the same machine). Pair it with DenySelf.
func (g *Guard) WithoutLoopback() *Guard {
	out := &Guard{self: g.self}
	for _, p := range g.deny {
		if !p.Addr().IsLoopback() {
			out.deny = append(out.deny, p)
		}
	}
	for _, h := range g.hosts {
		if h != "localhost" && h != ".localhost" {
			out.hosts = append(out.hosts, h)
		}
	}
	return out
}

// DenySelf returns a copy of g that also refuses the listen addresses addrs ("host:port"; an
// empty or unspecified host stands for every local address with that port).
func (g *Guard) DenySelf(addrs ...string) (*Guard, error) {
	out := &Guard{deny: g.deny, hosts: g.hosts, self: append([]netip.AddrPort(nil), g.self...)}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", a, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: port: %w", a, err)
		}
		ip := netip.IPv6Unspecified()
		if host != "" {
			if ip, err = netip.ParseAddr(host); err != nil {
				return nil, fmt.Errorf("listen address %q: %w", a, err)
			}
		}
		out.self = append(out.self, netip.AddrPortFrom(ip.Unmap().WithZone(""), uint16(p)))
	}
	return out, nil
}

// Check parses raw and checks it is an absolute http or https URL whose host may be called:
// not a denied name, not a name of a single label, not a zoned or non-canonical numeric
// address (0x7f.1, 2130706433, 0177.0.0.1…), not an address of a denied network or of the
// process itself. The error wraps ErrForbidden for a denied destination.
func (g *Guard) Check(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, errors.New("not an absolute http or https URL")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q is not a port number", u.Port())
	}
	if strings.Contains(host, "%") {
		return nil, fmt.Errorf("%w: zoned address %s", ErrForbidden, host)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := g.CheckAddr(netip.AddrPortFrom(a, uint16(p))); err != nil {
			return nil, err
		}
		return u, nil
	}
	if numeric(host) {
		return nil, fmt.Errorf("%w: %s is not a canonical address or a host name", ErrForbidden, host)
	}
	for _, h := range g.hosts {
		if host == h || (strings.HasPrefix(h, ".") && (strings.HasSuffix(host, h) || host == h[1:])) {
			return nil, fmt.Errorf("%w: host %s", ErrForbidden, host)
		}
	}
	if !strings.Contains(host, ".") && host != "localhost" { // localhost: denied by hosts unless WithoutLoopback
		return nil, fmt.Errorf("%w: %s is a name of one label (a cluster-internal name)", ErrForbidden, host)
	}
	return u, nil
}

// numeric reports whether host's last label is numeric (digits, or 0x and hex digits): such a
// name is an address in one of the forms C libraries accept (127.1, 0x7f000001), never a name
// under a real top-level domain.
func numeric(host string) bool {
	labels := strings.Split(host, ".")
	last := labels[len(labels)-1]
	if last == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(last, "0x"); ok {
		_, err := strconv.ParseUint("0"+rest, 16, 64)
		return err == nil
	}
	_, err := strconv.ParseUint(last, 10, 64)
	return err == nil
}

// CheckAddr reports whether ap may be connected to: not in a denied network (IPv4-mapped
// addresses count as IPv4, zones are ignored) and not the process's own listen address.
func (g *Guard) CheckAddr(ap netip.AddrPort) error {
	a := ap.Addr().Unmap().WithZone("")
	for _, p := range g.deny {
		if p.Contains(a) {
			return fmt.Errorf("%w: %s", ErrForbidden, a)
		}
	}
	for _, s := range g.self {
		if s.Port() != ap.Port() {
			continue
		}
		if s.Addr() == a || (s.Addr().IsUnspecified() && (a.IsLoopback() || a.IsUnspecified() || local(a))) ||
			(s.Addr().IsLoopback() && a.IsUnspecified()) {
			return fmt.Errorf("%w: %s is this process's own address", ErrForbidden, netip.AddrPortFrom(a, ap.Port()))
		}
	}
	return nil
}

// local reports whether a is an address of one of this machine's interfaces.
func local(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: refuse
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// control is a net.Dialer Control function: it runs after name resolution, on the very address
// about to be connected.
func (g *Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("callback address %q: %w", address, err)
	}
	return g.CheckAddr(ap)
}

// Dialer returns a dialer that refuses what g refuses.
func (g *Guard) Dialer() *net.Dialer {
	return &net.Dialer{Control: g.control}
}
