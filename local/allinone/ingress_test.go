package allinone

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

// The Broker stand-in's ingress is not on the public port, and refuses senders without the
// local host's token.
func TestBrokerIngress(t *testing.T) {
	dir := t.TempDir()
	m, err := Start(context.Background(), Options{DataDir: dir, Addr: "127.0.0.1:0", ClustersDir: t.TempDir(),
		Logger: zaptest.NewLogger(t).Sugar()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	sink, err := url.Parse(m.Sink)
	if err != nil {
		t.Fatal(err)
	}
	if host := sink.Hostname(); host != "127.0.0.1" || strings.HasPrefix(m.URL, "http://"+sink.Host) {
		t.Fatalf("sink %s: want its own loopback listener, not the API's %s", m.Sink, m.URL)
	}
	token := strings.Split(sink.Path, "/")[1]
	post := func(u string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(`{}`))
		req.Header.Set("Ce-Id", "forged-1")
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Type", "dev.knative.apiserver.resource.update")
		req.Header.Set("Ce-Source", "forged")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	base := "http://" + sink.Host
	for name, c := range map[string]struct {
		url  string
		want int
	}{
		"public port":         {m.URL + "/broker/omni/default", http.StatusNotFound},
		"no token":            {base + "/broker/omni/default", http.StatusForbidden},
		"wrong token":         {base + "/" + strings.Repeat("0", len(token)) + "/broker/omni/default", http.StatusForbidden},
		"token, other prefix": {base + "/" + token + "/x/omni/default", http.StatusForbidden},
	} {
		if got := post(c.url); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
	if got := post(m.Sink); got/100 != 2 {
		t.Errorf("the local host's own sink: %d, want 2xx", got)
	}
}
