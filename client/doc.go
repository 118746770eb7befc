// Package client is the Go client of Chime's HTTP API: one method per route,
// with the request and response types of the API (same JSON field names), and
// the API's error body decoded into *Error. The chime CLI is built on it.
//
// It owns the wire side of the API only: building requests, authentication
// with a bearer token, the ?project= of every project-scoped call, decoding
// answers and errors, pagination. It depends on the standard library only, so
// that programs that schedule jobs do not pull in the server's dependencies;
// it must never import Chime's server packages (the types here are copies of
// the API's JSON shapes, kept in step by the tests in this package, which run
// every method against a real in-process node).
//
//	c := client.New("127.0.0.1:8700", os.Getenv("CHIME_TOKEN"))
//	job, err := c.CreateJob(ctx, client.JobRequest{
//		Name:        "nightly report",
//		CallbackURL: "https://example.com/hook",
//		Schedule:    client.Schedule{Cron: "0 2 * * *", Timezone: "Europe/Rome"},
//	})
//	var apiErr *client.Error
//	if errors.As(err, &apiErr) && apiErr.Field != "" {
//		log.Fatalf("fix %s: %s", apiErr.Field, apiErr.Message)
//	}
//
// Key decisions:
//   - Every call is bounded: the default http.Client has a 30 s timeout
//     (WithTimeout, WithHTTPClient), and the calls that legitimately take
//     longer (snapshot downloads and restores, which move the whole state, and
//     an endpoint test, which waits for the attempt) have their own longer
//     bound (WithStreamTimeout). The context bounds a call further. The one
//     exception is Stream, the change feed, which lasts as long as its context.
//   - Any answer outside 2xx is an *Error carrying the HTTP status and the
//     API's code, field and message, so callers match on Code or Status rather
//     than on text. Transport failures are returned as they are.
//   - Lists return one Page and its NextCursor; All walks every page.
//   - WithRawBody lets a caller see the exact bytes the API answered (the CLI's
//     --json prints them) without a second copy of every response type.
//   - Calls are not retried: a write that timed out may have been applied, and
//     only the caller knows whether repeating it is safe (WithIdempotencyKey
//     makes it so for the API's POSTs).
package client
