package fsm

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// msgpack sorts the keys of these map types only; any other map in a command
// or record would encode in random order.
func TestOnlySortableMaps(t *testing.T) {
	sortable := map[reflect.Type]bool{
		reflect.TypeFor[map[string]string](): true,
		reflect.TypeFor[map[string]bool]():   true,
		reflect.TypeFor[map[string]any]():    true,
	}
	seen := map[reflect.Type]bool{}
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		if seen[typ] {
			return
		}
		seen[typ] = true
		switch typ.Kind() {
		case reflect.Map:
			if !sortable[typ] {
				t.Errorf("%s is a %v, which msgpack does not sort", path, typ)
			}
			walk(path+"[]", typ.Elem())
		case reflect.Pointer, reflect.Slice, reflect.Array:
			walk(path, typ.Elem())
		case reflect.Struct:
			for i := range typ.NumField() {
				walk(path+"."+typ.Field(i).Name, typ.Field(i).Type)
			}
		}
	}
	for _, td := range tableDefs {
		walk(td.name, td.recordType)
	}
	for _, v := range []any{Batch{}, Bootstrap{}, ProjectCreate{}, ProjectDelete{}, Put{}, Delete{}} {
		walk(reflect.TypeOf(v).Name(), reflect.TypeOf(v))
	}
}

func TestEncodeIsDeterministic(t *testing.T) {
	j := fullJob("j1", "p1", 5)
	j.Headers = map[string]string{"z": "1", "a": "2", "m": "3", "b": "4", "y": "5", "c": "6"}
	first := put(t, TableJobs, j)
	for range 20 {
		if again := put(t, TableJobs, j); !bytes.Equal(again, first) {
			t.Fatal("same command encoded to different bytes")
		}
	}
	if typ, err := TypeOf(first); err != nil || typ != CmdPut {
		t.Fatalf("TypeOf = %v, %v", typ, err)
	}
	var p Put
	if err := Decode(first, CmdPut, &p); err != nil || p.Table != TableJobs {
		t.Fatalf("Decode = %+v, %v", p, err)
	}
	var back Job
	if err := DecodeBody(p.Record, &back); err != nil || back.Headers["m"] != "3" {
		t.Fatalf("record = %+v, %v", back, err)
	}
	if err := Decode(first, CmdDelete, &p); err == nil {
		t.Fatal("Decode accepted the wrong type")
	}
	if _, err := TypeOf(nil); err == nil {
		t.Fatal("TypeOf(nil) succeeded")
	}
	if _, err := Encode(0, &Bootstrap{}); err == nil {
		t.Fatal("Encode accepted type 0")
	}
}

// A newer node's added field must not break an older decoder (records are
// maps, not arrays).
func TestDecodeIgnoresUnknownFields(t *testing.T) {
	b, err := marshal(nil, &struct {
		Name   string `msgpack:"name"`
		Colour string `msgpack:"colour"`
	}{"p1", "blue"})
	if err != nil {
		t.Fatal(err)
	}
	var p Project
	if err := DecodeBody(b, &p); err != nil || p.Name != "p1" {
		t.Fatalf("decoded %+v, %v", p, err)
	}
}

func TestCommandConstructors(t *testing.T) {
	if _, err := PutCommand("nope", &Job{}, PutOptions{}); err == nil {
		t.Error("PutCommand accepted an unknown table")
	}
	if _, err := PutCommand(TableJobs, &Event{}, PutOptions{}); err == nil {
		t.Error("PutCommand accepted a record of another table")
	}
	if _, err := DeleteCommand("nope", "x", 0); err == nil {
		t.Error("DeleteCommand accepted an unknown table")
	}
	for typ, name := range map[CommandType]string{CmdBatch: "batch", CmdPut: "put", 0x93: "unknown(0x93)"} {
		if typ.String() != name {
			t.Errorf("%d.String() = %q", typ, typ.String())
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		code string
		kind error
	}{{CodeNotFound, ErrNotFound}, {CodeConflict, ErrConflict}, {CodeInvalid, ErrInvalid}} {
		err := ErrorFromCode(tc.code, "the message", "field")
		var e *Error
		if !errors.Is(err, tc.kind) || !errors.As(err, &e) || e.Code != tc.code || e.Field != "field" || err.Error() != "the message" {
			t.Errorf("ErrorFromCode(%q) = %#v", tc.code, err)
		}
	}
	err := ErrorFromCode("teapot", "", "")
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid) || err.Error() != "teapot" {
		t.Errorf("unknown code = %#v", err)
	}
	if got := (&Error{Kind: ErrConflict}).Error(); got != "conflict" {
		t.Errorf("message-less error = %q", got)
	}
}

func TestMillis(t *testing.T) {
	if !Millis(0).Time().IsZero() || MillisOf(time.Time{}) != 0 {
		t.Fatal("zero is not unset")
	}
	at := time.Date(2026, 3, 29, 1, 30, 0, 123e6, time.FixedZone("X", 3600))
	m := MillisOf(at)
	if m != 1774744200123 || !m.Time().Equal(at) || m.Time().Location() != time.UTC {
		t.Fatalf("MillisOf = %d, back %v", m, m.Time())
	}
	if got := Millis(-1).Time(); !got.Equal(time.UnixMilli(-1)) {
		t.Fatalf("negative = %v", got)
	}
}

// IdempotencyRecord's Caller and Withheld (issue 12) are additions: a record
// of an older version decodes with them empty, and an older version decodes
// a new record, ignoring them.
func TestIdempotencyRecordCompatible(t *testing.T) {
	type oldRecord struct {
		ID          string `msgpack:"id,omitempty"`
		Fingerprint string `msgpack:"fp,omitempty"`
		Status      int    `msgpack:"status,omitempty"`
		Body        []byte `msgpack:"body,omitempty"`
		ClaimUntil  Millis `msgpack:"claim,omitempty"`
		Applied     bool   `msgpack:"applied,omitempty"`
		CreatedAt   Millis `msgpack:"cat,omitempty"`
		ExpiresAt   Millis `msgpack:"exp,omitempty"`
	}
	old := oldRecord{ID: "p/k", Fingerprint: "fp", Status: 201, Body: []byte(`{}`), Applied: true, CreatedAt: 1, ExpiresAt: 2}
	b, err := msgpack.Marshal(&old)
	if err != nil {
		t.Fatal(err)
	}
	var rec IdempotencyRecord
	if err := DecodeBody(b, &rec); err != nil || rec.ID != "p/k" || rec.Status != 201 || rec.Caller != "" || rec.Withheld != nil {
		t.Fatalf("old record decoded as %+v, %v", rec, err)
	}
	rec.Caller, rec.Withheld = "tok_1", []string{"secret"}
	b, err = msgpack.Marshal(&rec)
	if err != nil {
		t.Fatal(err)
	}
	var back oldRecord
	if err := DecodeBody(b, &back); err != nil || back.ID != "p/k" || back.Status != 201 || !back.Applied {
		t.Fatalf("new record decoded by an old version as %+v, %v", back, err)
	}
}
