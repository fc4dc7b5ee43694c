package callback

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// FuzzCheck feeds callback URLs (the callback field of a submit, from the network) to the
// guard: a URL it accepts is an absolute http(s) URL whose host is no denied name, no name of
// one label, and — when it is an address — in no denied network, and the URL as the guard
// gives it back is accepted again, with the same host; a refusal is an error, never a crash.
func FuzzCheck(f *testing.F) {
	g := defaultGuard(f)
	deny := make([]netip.Prefix, 0, len(DefaultDeny))
	for _, s := range DefaultDeny {
		deny = append(deny, netip.MustParsePrefix(s))
	}
	for _, seed := range []string{
		"https://hooks.example.org/omni?token=x", "http://93.184.216.34:8080/x", "http://[2001:4860::8888]/x",
		"http://0.0.0.0/", "http://0177.0.0.1/", "http://0x7f.1/", "http://0x7f000001/", "http://10.0.0.5/",
		"http://100.100.100.200/", "http://127.0.0.1:8080/", "http://127.1/", "http://169.254.169.254/latest",
		"http://172.20.1.1/", "http://192.168.1.1/", "http://2130706433/", "http://LOCALHOST:8080/",
		"http://[64:ff9b::a9fe:a9fe]/", "http://[::1%25lo]:8080/", "http://[::1]/", "http://[::]/",
		"http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[fd00:10:96::a]/", "http://[fe80::1%25eth0]/",
		"http://a.localhost/", "http://example.org:99999/", "http://notify.omni.svc.cluster.local./",
		"http://notify.omni.svc/", "http://notify/", "file:///etc/passwd", "http:opaque", "",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := g.Check(raw)
		if err != nil {
			if u != nil || err.Error() == "" {
				t.Fatalf("Check(%q): error %q with URL %v", raw, err, u)
			}
			return
		}
		if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Fatalf("Check(%q) accepted %v", raw, u)
		}
		host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		if a, err := netip.ParseAddr(host); err == nil {
			for _, p := range deny {
				if p.Contains(a.Unmap().WithZone("")) {
					t.Errorf("Check(%q) accepted %s, in denied network %s", raw, a, p)
				}
			}
		} else {
			if !strings.Contains(host, ".") {
				t.Errorf("Check(%q) accepted the one-label name %q", raw, host)
			}
			for _, h := range DefaultDenyHosts {
				if host == strings.TrimPrefix(h, ".") || (strings.HasPrefix(h, ".") && strings.HasSuffix(host, h)) {
					t.Errorf("Check(%q) accepted the denied name %q (%s)", raw, host, h)
				}
			}
		}
		again, err := g.Check(u.String())
		if err != nil || strings.TrimSuffix(strings.ToLower(again.Hostname()), ".") != host {
			t.Errorf("Check(%q) accepted %q, which is then %v (%v)", raw, u, again, err)
		}
		if errors.Is(err, ErrForbidden) {
			t.Errorf("the re-encoded URL %q is forbidden", u)
		}
	})
}
