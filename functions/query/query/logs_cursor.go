package query

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/logs"
)

// cursorBody is what a log cursor carries, bound to one job, step and stream.
type cursorBody struct {
	Kind string `json:"k"`
	Job  string `json:"j"`
	Step string `json:"s"`
	// Stream is the stream the position is in: "" for the step's log as the cluster served it
	// (live or archived), streamPushed for the lines its worker pushed. The two are numbered
	// apart, so a position in one means nothing in the other.
	Stream string `json:"r,omitempty"`
	logs.Pos
}

// cursorKind marks log cursors, so that a page token of GET /v1/jobs is never taken for one
// (and the other way round: a page token has no "k").
const cursorKind = "log"

// cursorMACPrefix separates the MACs of log cursors from those of page tokens made with the
// same key.
var cursorMACPrefix = []byte("omni log cursor\x00")

// sealCursor returns the opaque cursor of pos in stream ("" or streamPushed) of the log of step
// of job. A position is the same in the cluster's log and in the archive (shared/logs' numbering
// rule), so one cursor serves both sources; its hints let either resume without counting from
// line 1.
func (t *Tokens) sealCursor(job, step, stream string, pos logs.Pos) string {
	body, _ := json.Marshal(cursorBody{Kind: cursorKind, Job: job, Step: step, Stream: stream, Pos: pos})
	return base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(t.cursorMAC(body))
}

// openCursor checks a cursor made by sealCursor for the same job, step and stream and returns
// its position; anything else is a 400 naming field.
func (t *Tokens) openCursor(field, cursor, job, step, stream string) (logs.Pos, error) {
	bad := jobs.Invalid(field, "not a log cursor of step %q of this job", step)
	if stream != "" {
		bad = jobs.Invalid(field, "not a cursor of the pushed lines of step %q of this job", step)
	}
	b64, sig64, ok := strings.Cut(cursor, ".")
	if !ok {
		return logs.Pos{}, bad
	}
	body, err1 := base64.RawURLEncoding.DecodeString(b64)
	sig, err2 := base64.RawURLEncoding.DecodeString(sig64)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, t.cursorMAC(body)) {
		return logs.Pos{}, bad
	}
	var cb cursorBody
	if err := json.Unmarshal(body, &cb); err != nil || cb.Kind != cursorKind || cb.Job != inJSON(job) || cb.Step != inJSON(step) ||
		cb.Stream != stream || !cb.Pos.Valid() {
		return logs.Pos{}, bad
	}
	return cb.Pos, nil
}

func (t *Tokens) cursorMAC(body []byte) []byte {
	return t.mac(append(append([]byte{}, cursorMACPrefix...), body...))
}

// inJSON is s as it reads back from JSON: encoding/json writes each byte of s that is not
// UTF-8 as U+FFFD, so a cursor holds a name that is not UTF-8 in that form.
func inJSON(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}
