package callback

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func defaultGuard(t testing.TB) *Guard {
	t.Helper()
	g, err := GuardEnv{Deny: DefaultDeny, ServiceCIDR: []string{"10.96.0.0/12", "fd00:10:96::/112"}, DenyHosts: DefaultDenyHosts}.Guard()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestCheck(t *testing.T) {
	g := defaultGuard(t)
	for raw, want := range map[string]string{
		"https://hooks.example.org/omni?token=x": "",
		"http://93.184.216.34:8080/x":            "",
		"http://[2001:4860::8888]/x":             "",
		"ftp://example.org/x":                    "not an absolute http",
		"/relative":                              "not an absolute http",
		"http://example.org:99999/":              "not a port number",
		"http://[::1%25lo]:8080/":                "zoned address",
		"http://[fe80::1%25eth0]/":               "zoned address",
		"http://[::1]/":                          "denied network",
		"http://127.0.0.1/":                      "denied network",
		"http://[::ffff:127.0.0.1]/":             "denied network",
		"http://[::ffff:7f00:1]/":                "denied network",
		"http://0.0.0.0/":                        "denied network",
		"http://[::]/":                           "denied network",
		"http://2130706433/":                     "not a canonical address",
		"http://0x7f000001/":                     "not a canonical address",
		"http://0x7f.1/":                         "not a canonical address",
		"http://127.1/":                          "not a canonical address",
		"http://0177.0.0.1/":                     "not a canonical address",
		"http://10.0.0.5/":                       "denied network",
		"http://172.20.1.1/":                     "denied network",
		"http://192.168.1.1/":                    "denied network",
		"http://[fd00:ec2::254]/":                "denied network",
		"http://[fd00:10:96::a]/":                "denied network",
		"http://169.254.169.254/latest":          "denied network",
		"http://100.100.100.200/":                "denied network",
		"http://[64:ff9b::a9fe:a9fe]/":           "denied network",
		"http://notify/":                         "one label",
		"http://notify.omni/":                    "",
		"http://notify.omni.svc/":                "host notify.omni.svc",
		"http://notify.omni.svc.cluster.local./": "host notify.omni.svc.cluster.local",
		"http://LOCALHOST:8080/":                 "host localhost",
		"http://a.localhost/":                    "host a.localhost",
	} {
		_, err := g.Check(raw)
		switch {
		case want == "" && err != nil:
			t.Errorf("Check(%s) = %v, want allowed", raw, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("Check(%s) = %v, want an error with %q", raw, err, want)
		case want != "" && !strings.Contains(want, "absolute") && !strings.Contains(want, "port") && !errors.Is(err, ErrForbidden):
			t.Errorf("Check(%s) = %v, want ErrForbidden", raw, err)
		}
	}
}

// The local all-in-one allows loopback but never its own listen address.
func TestWithoutLoopbackDenySelf(t *testing.T) {
	g, err := defaultGuard(t).WithoutLoopback().DenySelf("127.0.0.1:8080", "[::]:9090")
	if err != nil {
		t.Fatal(err)
	}
	for raw, allowed := range map[string]bool{
		"http://127.0.0.1:8081/":       true,
		"http://localhost:8081/":       true,
		"http://[::1]:8081/":           true,
		"http://127.0.0.1:8080/":       false,
		"http://127.0.0.1:9090/":       false,
		"http://[::1]:9090/":           false,
		"http://[::1%25lo]:8081/":      false,
		"http://10.0.0.1:8081/":        false,
		"http://169.254.169.254:8081/": false,
	} {
		if _, err := g.Check(raw); (err == nil) != allowed {
			t.Errorf("Check(%s) = %v, want allowed %v", raw, err, allowed)
		}
	}
}

// At connect time: the dialer refuses the resolved address, names and zones included.
func TestDialerRefuses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	d := defaultGuard(t).Dialer()
	for _, addr := range []string{srv.Listener.Addr().String(), "localhost:" + port, "[::1%lo]:" + port, "[::ffff:127.0.0.1]:" + port} {
		c, err := d.DialContext(context.Background(), "tcp", addr)
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("dial %s: %v, want ErrForbidden", addr, err)
		}
	}
	allowed, err := New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := allowed.Dialer().DialContext(context.Background(), "tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatalf("dial with nothing denied: %v", err)
	}
	c.Close()
}

// The defaults of the settings are the exported lists (envconfig reads them from struct tags,
// which cannot name a variable): one list, tested to be one.
func TestSettingsDefaultsAreTheLists(t *testing.T) {
	typ := reflect.TypeOf(GuardEnv{})
	for field, want := range map[string][]string{"Deny": DefaultDeny, "DenyHosts": DefaultDenyHosts} {
		f, _ := typ.FieldByName(field)
		if d := cmp.Diff(want, strings.Split(f.Tag.Get("default"), ",")); d != "" {
			t.Errorf("GuardEnv.%s default differs from its list (-list +tag):\n%s", field, d)
		}
	}
}
