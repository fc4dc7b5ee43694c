package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery besides the CloudEvents binary-mode headers (ce-id, ce-type,
// ce-source, ce-subject, ce-time, ce-omni…) and Content-Type.
const (
	// HeaderEventID repeats ce-id: receivers de-duplicate by it.
	HeaderEventID = "X-Omni-Event-Id"
	// HeaderEventType repeats ce-type.
	HeaderEventType = "X-Omni-Event-Type"
	// HeaderTimestamp is when this delivery was sent, in Unix seconds; the signature covers
	// it, so a receiver refuses a replay of an old delivery (ce-time is when the change was
	// stored).
	HeaderTimestamp = "X-Omni-Timestamp"
	// HeaderReceiver names who the delivery is for: "callback", or the subscription's name.
	HeaderReceiver = "X-Omni-Receiver"
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256, keyed with the receiver's secret,
	// of the event id, ".", the timestamp, ".", and the exact body; absent when the receiver
	// has no secret.
	HeaderSignature = "X-Omni-Signature"
)

// DefaultTolerance is how old a delivery's timestamp a receiver should accept (and how far in
// the future, for clock skew): it covers the Broker's retries of one delivery attempt but not
// replays of old deliveries.
const DefaultTolerance = 5 * time.Minute

const signaturePrefix = "sha256="

// Sign returns the X-Omni-Signature value of a delivery of event id at timestamp (Unix
// seconds) with body, for secret.
func Sign(secret []byte, id string, timestamp int64, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac(secret, id, strconv.FormatInt(timestamp, 10), body))
}

func mac(secret []byte, id, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	m.Write([]byte("."))
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// Verify reports whether signature (an X-Omni-Signature value) signs event id, timestamp (the
// X-Omni-Timestamp value) and body with secret. It compares in constant time, as a receiver
// must. It does not check the timestamp's age: VerifyDelivery does.
func Verify(secret []byte, id, timestamp string, body []byte, signature string) bool {
	hexSum, ok := strings.CutPrefix(strings.TrimSpace(signature), signaturePrefix)
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil {
		return false
	}
	return hmac.Equal(got, mac(secret, id, timestamp, body))
}

// VerifyDelivery checks a delivery as a receiver should: the signature over its event id,
// timestamp and body, and a timestamp within tolerance of now (DefaultTolerance if ≤ 0).
func VerifyDelivery(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	ts := h.Get(HeaderTimestamp)
	if !Verify(secret, h.Get(HeaderEventID), ts, body, h.Get(HeaderSignature)) {
		return errors.New("signature does not verify")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q is not Unix seconds", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("timestamp %s is %s away from now (tolerance %s): a replay?", time.Unix(sec, 0).UTC().Format(time.RFC3339), d.Round(time.Second), tolerance)
	}
	return nil
}
