package main

import "testing"

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		bad  bool
	}{
		{in: "0", want: 0}, {in: "4096", want: 4096}, {in: "64MiB", want: 64 << 20}, {in: "64mib", want: 64 << 20},
		{in: "2 GiB", want: 2 << 30}, {in: "500MB", want: 500e6}, {in: "10B", want: 10},
		{in: "", bad: true}, {in: "-1", bad: true}, {in: "1.5GiB", bad: true}, {in: "12XB", bad: true},
		{in: "99999999999TiB", bad: true},
	} {
		var b byteSize
		err := b.Set(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("Set(%q) = %d, want an error", tc.in, uint64(b))
			}
			continue
		}
		if err != nil || uint64(b) != tc.want {
			t.Errorf("Set(%q) = %d, %v; want %d", tc.in, uint64(b), err, tc.want)
		}
	}
	if s := (func() string { b := byteSize(64 << 20); return b.String() })(); s != "64MiB" {
		t.Errorf("String() = %q, want 64MiB", s)
	}
}
