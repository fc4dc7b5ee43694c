package notify

import "testing"

func TestSign(t *testing.T) {
	secret, body := []byte("It's a secret"), []byte(`{"id":"x"}`)
	// printf '%s' '{"id":"x"}' | openssl dgst -sha256 -hmac "It's a secret" -hex (docs/notify.md)
	const want = "sha256=bbf1c5ab5949d8c0485eec3cac43668157bdf43d930b7934a16a5a2f546bb084"
	if got := Sign(secret, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	for name, c := range map[string]struct {
		secret, body []byte
		signature    string
		ok           bool
	}{
		"valid":                  {secret, body, want, true},
		"surrounding blanks":     {secret, body, " " + want + " ", true},
		"upper-case hex":         {secret, body, "sha256=BBF1C5AB5949D8C0485EEC3CAC43668157BDF43D930B7934A16A5A2F546BB084", true},
		"other secret":           {[]byte("another"), body, want, false},
		"body changed":           {secret, []byte(`{"id":"y"}`), want, false},
		"body re-encoded":        {secret, []byte(`{"id": "x"}`), want, false},
		"no prefix":              {secret, body, want[len("sha256="):], false},
		"other algorithm prefix": {secret, body, "sha1=" + want[len("sha256="):], false},
		"not hex":                {secret, body, "sha256=zz", false},
		"truncated":              {secret, body, want[:len(want)-2], false},
		"empty":                  {secret, body, "", false},
	} {
		if got := Verify(c.secret, c.body, c.signature); got != c.ok {
			t.Errorf("%s: Verify = %v, want %v", name, got, c.ok)
		}
	}
}
