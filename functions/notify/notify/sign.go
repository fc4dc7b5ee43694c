package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// The headers of a delivery besides the CloudEvents binary-mode headers (ce-id, ce-type,
// ce-source, ce-subject, ce-time, ce-omni…) and Content-Type.
const (
	// HeaderEventID repeats ce-id: receivers de-duplicate by it.
	HeaderEventID = "X-Omni-Event-Id"
	// HeaderEventType repeats ce-type.
	HeaderEventType = "X-Omni-Event-Type"
	// HeaderTimestamp is the time of the change (RFC 3339, UTC), as ce-time.
	HeaderTimestamp = "X-Omni-Timestamp"
	// HeaderReceiver names who the delivery is for: "callback", or the subscription's name.
	HeaderReceiver = "X-Omni-Receiver"
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the exact body with the
	// receiver's secret; absent when the receiver has no secret.
	HeaderSignature = "X-Omni-Signature"
)

const signaturePrefix = "sha256="

// Sign returns the X-Omni-Signature value of body for secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return signaturePrefix + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether signature (an X-Omni-Signature value) is the signature of body with
// secret. It compares in constant time, as a receiver must.
func Verify(secret, body []byte, signature string) bool {
	hexSum, ok := strings.CutPrefix(strings.TrimSpace(signature), signaturePrefix)
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}
