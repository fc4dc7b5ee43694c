package notify

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNetworks(t *testing.T) {
	n, err := ParseNetworks(DefaultCallbackDeny)
	if err != nil {
		t.Fatal(err)
	}
	for addr, denied := range map[string]bool{
		"127.0.0.1":          true,
		"127.8.9.10":         true,
		"::1":                true,
		"::ffff:127.0.0.1":   true, // IPv4-mapped
		"169.254.169.254":    true,
		"::ffff:169.254.1.1": true,
		"fe80::1":            true,
		"0.0.0.0":            true,
		"::":                 true,
		"100.100.100.200":    true,
		"fd00:ec2::254":      true,
		"10.0.0.1":           false, // private networks are allowed by default
		"192.168.1.20":       false,
		"8.8.8.8":            false,
		"2001:db8::1":        false,
	} {
		if got := n.Contains(netip.MustParseAddr(addr)); got != denied {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, denied)
		}
	}
	if _, err := ParseNetworks([]string{"10.0.0.0/33"}); err == nil {
		t.Error("ParseNetworks accepted 10.0.0.0/33")
	}
	if _, err := ParseNetworks([]string{"not-an-ip"}); err == nil {
		t.Error("ParseNetworks accepted not-an-ip")
	}
	single, err := ParseNetworks([]string{" 10.1.2.3 ", ""})
	if err != nil || len(single) != 1 || !single.Contains(netip.MustParseAddr("10.1.2.3")) || single.Contains(netip.MustParseAddr("10.1.2.4")) {
		t.Errorf("single address: %v %v", single, err)
	}
}

func TestWithoutLoopback(t *testing.T) {
	got := WithoutLoopback(DefaultCallbackDeny)
	want := []string{"169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128", "100.100.100.200/32", "fd00:ec2::254/128"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("WithoutLoopback (-want +got):\n%s", d)
	}
}

func TestDialerRefuses(t *testing.T) {
	n, _ := ParseNetworks([]string{"127.0.0.0/8"})
	_, err := n.dialer().DialContext(context.Background(), "tcp", "127.0.0.1:1")
	if !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("dial 127.0.0.1: %v, want ErrForbiddenAddress", err)
	}
}
