package api

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Issue 12 item 11: a request body that trickles in slower than the
// minimum rate (after a grace period) is cut: 408, connection closed,
// instead of holding a connection and a handler for as long as the client
// likes. Keyed and unkeyed writes alike.
func TestTricklingBodyIsCut(t *testing.T) {
	srv, _ := newNodeWith(t, func(cfg *Config) {
		cfg.BodyReadGrace = 300 * time.Millisecond
		cfg.MinBodyRate = 1024
	})
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct{ path, key string }{{"/v1/jobs", ""}, {"/v1/jobs", "trickle-1"}, {"/v1/cluster/restore", ""}} {
		key := tc.key
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		body := `{"name":"slow","recurrenceSeconds":3600,"callbackUrl":"https://example.com/h","description":"` + strings.Repeat("x", 500) + `"}`
		hdr := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", tc.path, testRootToken, len(body))
		if key != "" {
			hdr += HeaderIdempotencyKey + ": " + key + "\r\n"
		}
		if _, err := conn.Write([]byte(hdr + "\r\n")); err != nil {
			t.Fatal(err)
		}
		// One byte every 50 ms: 20 B/s, the whole body would take 30 s.
		stop := make(chan struct{})
		go func() {
			for i := 0; i < len(body); i++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := conn.Write([]byte{body[i]}); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		_ = conn.SetReadDeadline(start.Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		close(stop)
		if err != nil {
			t.Fatalf("%s key %q: no answer to a trickling body within 10 s: %v", tc.path, key, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > 5*time.Second {
			t.Fatalf("%s key %q: %d after %v; want 408 within seconds", tc.path, key, resp.StatusCode, time.Since(start))
		}
	}
	// A body sent at once is unaffected.
	want(t, do(t, srv, "POST", "/v1/jobs", `{"name":"fast","recurrenceSeconds":3600,"callbackUrl":"https://example.com/h"}`), 201)
}
