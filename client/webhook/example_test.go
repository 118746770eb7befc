package webhook_test

import (
	"io"
	"log"
	"net/http"
	"os"

	"github.com/chime-sched/chime/client/webhook"
)

func ExampleVerifier_Verify() {
	v := webhook.Verifier{Secrets: []string{os.Getenv("CHIME_WEBHOOK_SECRET")}}
	http.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20)) // the raw body, before any parsing
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		if err := v.Verify(r.Header, body); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// Delivery is at least once: deduplicate on webhook-id.
		log.Printf("delivery %s: %s", r.Header.Get(webhook.HeaderID), body)
		w.WriteHeader(http.StatusNoContent)
	})
}
