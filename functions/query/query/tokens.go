package query

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// Tokens seals store cursors into opaque page tokens bound to the filter they were made for,
// with an HMAC-SHA256 so that clients cannot forge or alter them.
type Tokens struct{ key []byte }

// NewTokens returns Tokens signing with key (at least 32 bytes).
func NewTokens(key []byte) *Tokens { return &Tokens{key: key} }

type tokenBody struct {
	Cursor string `json:"c"`
	Filter string `json:"f"`
}

// filterKey identifies the query a cursor belongs to (everything but the cursor and limit).
func filterKey(f store.Filter) string {
	return strings.Join([]string{f.Service, f.Task, f.Domain, string(f.Status),
		f.Since.Format(time.RFC3339Nano), f.Until.Format(time.RFC3339Nano)}, "\x00")
}

// Seal returns the page token for cursor under filter f.
func (t *Tokens) Seal(cursor string, f store.Filter) string {
	body, _ := json.Marshal(tokenBody{Cursor: cursor, Filter: filterKey(f)})
	return base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(t.mac(body))
}

// Open checks token and returns its cursor; a forged, altered or foreign token is a 400.
func (t *Tokens) Open(token string, f store.Filter) (string, error) {
	bad := jobs.Invalid("page_token", "not a page token of this query (tokens are only valid with the same filters)")
	b64, sig64, ok := strings.Cut(token, ".")
	if !ok {
		return "", bad
	}
	body, err1 := base64.RawURLEncoding.DecodeString(b64)
	sig, err2 := base64.RawURLEncoding.DecodeString(sig64)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, t.mac(body)) {
		return "", bad
	}
	var tb tokenBody
	if err := json.Unmarshal(body, &tb); err != nil || tb.Filter != inJSON(filterKey(f)) {
		return "", bad
	}
	return tb.Cursor, nil
}

func (t *Tokens) mac(body []byte) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write(body)
	return m.Sum(nil)
}
