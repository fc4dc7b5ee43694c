// Package ids makes job ids: 26 characters of lowercase Crockford base32, time-ordered
// (48 bits of milliseconds, then 80 random bits, as a ULID), so ids sort by creation and are
// valid in Kubernetes object names and label values.
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"regexp"
	"time"
)

const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// New returns a new job id for time t.
func New(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	// 128 bits → 26 base32 digits (the first digit carries 3 bits).
	var out [26]byte
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

var valid = regexp.MustCompile(`^[0-7][0-9abcdefghjkmnpqrstvwxyz]{25}$`)

// Valid reports whether s has the shape of a job id.
func Valid(s string) bool { return valid.MatchString(s) }
