package client

import (
	"context"
	"iter"
)

// All walks every item of a list, page after page, calling fetch with the
// cursor of each page ("" for the first). It stops at the first error,
// which it yields with a zero item, or when the loop body breaks.
//
//	for job, err := range client.All(ctx, func(ctx context.Context, cursor string) (*client.Page[client.Job], error) {
//		return c.ListJobs(ctx, client.JobListOptions{Status: client.JobActive, ListOptions: client.ListOptions{Cursor: cursor}})
//	}) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(job.ID)
//	}
func All[T any](ctx context.Context, fetch func(ctx context.Context, cursor string) (*Page[T], error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		cursor := ""
		for {
			page, err := fetch(ctx, cursor)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, item := range page.Items {
				if !yield(item, nil) {
					return
				}
			}
			// A cursor that does not move would loop forever; the API never
			// issues one, but a proxy replaying a cached page could.
			if page.NextCursor == "" || page.NextCursor == cursor {
				return
			}
			cursor = page.NextCursor
		}
	}
}
