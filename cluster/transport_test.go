package cluster

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestTransportRefusesOtherKeyOrName(t *testing.T) {
	logger := testLogger(t)
	srv, err := newMuxTransport("127.0.0.1:0", "", "right-key", "prod", logger)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.accept(srv.fwdCh, nil)
			if err != nil {
				return
			}
			_, _ = io.Copy(c, c) // echo
			c.Close()
		}
	}()
	addr := srv.advertise.String()
	cases := []struct {
		name, key, cluster string
		ok                 bool
	}{
		{"same key and name", "right-key", "prod", true},
		{"other key", "wrong-key", "prod", false},
		{"other cluster name", "right-key", "staging", false},
		{"no key", "", "prod", false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			cli, err := newMuxTransport("127.0.0.1:0", "", tt.key, tt.cluster, logger)
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			conn, err := cli.dial(ctx, addr, purposeForward)
			if !tt.ok {
				if !errors.Is(err, ErrAuth) {
					t.Fatalf("dial: got %v, want ErrAuth", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("echo: %q %v", buf, err)
			}
		})
	}
}
