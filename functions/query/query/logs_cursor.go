package query

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// logPos is a position in a step's log: the number of lines before it. Line numbers are the
// same in the cluster's log and in the archive (the archive holds exactly the cluster's lines, in
// order), so one position serves both. Seq and Base are a hint for the archive: chunk Seq begins
// after line Base (0 when unknown), which spares a resume from counting the chunks before it.
type logPos struct {
	N    int64 `json:"n"`
	Seq  int64 `json:"q,omitempty"`
	Base int64 `json:"b,omitempty"`
}

// cursorBody is what a log cursor carries, bound to one job and step.
type cursorBody struct {
	Kind string `json:"k"`
	Job  string `json:"j"`
	Step string `json:"s"`
	logPos
}

// cursorKind marks log cursors, so that a page token of GET /v1/jobs is never taken for one
// (and the other way round: a page token has no "k").
const cursorKind = "log"

// cursorMACPrefix separates the MACs of log cursors from those of page tokens made with the
// same key.
var cursorMACPrefix = []byte("omni log cursor\x00")

// sealCursor returns the opaque cursor of pos in the log of step of job.
func (t *Tokens) sealCursor(job, step string, pos logPos) string {
	body, _ := json.Marshal(cursorBody{Kind: cursorKind, Job: job, Step: step, logPos: pos})
	return base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(t.cursorMAC(body))
}

// openCursor checks a cursor made by sealCursor for the same job and step and returns its
// position; anything else is a 400 naming field.
func (t *Tokens) openCursor(field, cursor, job, step string) (logPos, error) {
	bad := jobs.Invalid(field, "not a log cursor of step %q of this job", step)
	b64, sig64, ok := strings.Cut(cursor, ".")
	if !ok {
		return logPos{}, bad
	}
	body, err1 := base64.RawURLEncoding.DecodeString(b64)
	sig, err2 := base64.RawURLEncoding.DecodeString(sig64)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, t.cursorMAC(body)) {
		return logPos{}, bad
	}
	var cb cursorBody
	if err := json.Unmarshal(body, &cb); err != nil || cb.Kind != cursorKind || cb.Job != job || cb.Step != step ||
		cb.N < 0 || cb.Seq < 0 || cb.Base < 0 || cb.Base > cb.N {
		return logPos{}, bad
	}
	return cb.logPos, nil
}

func (t *Tokens) cursorMAC(body []byte) []byte {
	return t.mac(append(append([]byte{}, cursorMACPrefix...), body...))
}
