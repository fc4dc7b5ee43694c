package sqlite

import (
	"encoding/base64"
	"encoding/json"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// cursor is the position after which the next page starts: created_at (Unix store.MS) and id of the
// last job of the previous page.
type cursor struct {
	T  int64  `json:"t"`
	ID string `json:"i"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c) // cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.ID == "" {
		return cursor{}, jobs.Invalid("cursor", "malformed")
	}
	return c, nil
}
