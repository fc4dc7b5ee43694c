package notify

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestSign(t *testing.T) {
	secret, body := []byte("It's a secret"), []byte(`{"id":"x"}`)
	const id, ts = "x.changed.3", int64(1796560000)
	// printf '%s' 'x.changed.3.1796560000.{"id":"x"}' | openssl dgst -sha256 -hmac "It's a secret" (docs/notify.md)
	const want = "sha256=cacd76029050fa63011ef127b94cb6c6f88d4bde6812bbd327ef69bdab1b6da7"
	got := Sign(secret, id, ts, body)
	if got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	for name, c := range map[string]struct {
		secret, body []byte
		id, ts       string
		signature    string
		ok           bool
	}{
		"valid":              {secret, body, id, "1796560000", got, true},
		"surrounding blanks": {secret, body, id, "1796560000", " " + got + " ", true},
		"upper-case hex":     {secret, body, id, "1796560000", "sha256=" + strings.ToUpper(got[len("sha256="):]), true},
		"other secret":       {[]byte("another"), body, id, "1796560000", got, false},
		"other event":        {secret, body, "x.changed.4", "1796560000", got, false},
		"other timestamp":    {secret, body, id, "1796560001", got, false},
		"body changed":       {secret, []byte(`{"id":"y"}`), id, "1796560000", got, false},
		"body re-encoded":    {secret, []byte(`{"id": "x"}`), id, "1796560000", got, false},
		"no prefix":          {secret, body, id, "1796560000", got[len("sha256="):], false},
		"not hex":            {secret, body, id, "1796560000", "sha256=zz", false},
		"truncated":          {secret, body, id, "1796560000", got[:len(got)-2], false},
		"empty":              {secret, body, id, "1796560000", "", false},
	} {
		if ok := Verify(c.secret, c.id, c.ts, c.body, c.signature); ok != c.ok {
			t.Errorf("%s: Verify = %v, want %v", name, ok, c.ok)
		}
	}
}

// A receiver refuses a replay: a delivery whose timestamp is older than the tolerance.
func TestVerifyDelivery(t *testing.T) {
	secret, body := []byte("s"), []byte(`{}`)
	sent := time.Unix(1796560000, 0)
	h := http.Header{}
	h.Set(HeaderEventID, "x.changed.3")
	h.Set(HeaderTimestamp, "1796560000")
	h.Set(HeaderSignature, Sign(secret, "x.changed.3", sent.Unix(), body))
	for name, c := range map[string]struct {
		now time.Time
		ok  bool
	}{
		"at once":         {sent.Add(2 * time.Second), true},
		"within 5m":       {sent.Add(4 * time.Minute), true},
		"replayed later":  {sent.Add(6 * time.Minute), false},
		"from the future": {sent.Add(-6 * time.Minute), false},
	} {
		if err := VerifyDelivery(secret, h, body, c.now, 0); (err == nil) != c.ok {
			t.Errorf("%s: VerifyDelivery = %v, want ok %v", name, err, c.ok)
		}
	}
}
