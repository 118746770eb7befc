package fsm

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"strings"
	"time"
)

// Record ids are "<prefix>_<26 characters>": base32 (Crockford's alphabet,
// lower case) of 48 bits of milliseconds and 80 bits of entropy, so ids sort
// by time like ULIDs. Callers mint them; Apply never does.
//
// NewID draws random entropy (for records the API creates). DerivedID hashes
// its parts instead, so the same inputs always give the same id: an
// occurrence is derived from its job and slot and a delivery from its source
// and destination, which makes a repeated poller tick unable to create a
// second one.

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewID returns a new random, time-sortable id.
func NewID(prefix string, t time.Time) string {
	var e [10]byte
	if _, err := rand.Read(e[:]); err != nil {
		panic("fsm: no randomness: " + err.Error())
	}
	return makeID(prefix, MillisOf(t), e[:])
}

// DerivedID returns the id determined by t and parts.
func DerivedID(prefix string, t Millis, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return makeID(prefix, t, h[:10])
}

func makeID(prefix string, t Millis, entropy []byte) string {
	// 6 bytes of milliseconds (enough until the year 10889), then 10 of
	// entropy; base32 with an ascending alphabet keeps the byte order.
	var b [16]byte
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t))
	copy(b[:6], ms[2:])
	copy(b[6:], entropy)
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}
