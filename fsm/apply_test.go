package fsm

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func TestApplyCommands(t *testing.T) {
	job := func(id, project string) *Job { return fullJob(id, project, 1000) }
	tests := []struct {
		name    string
		setup   func(t *testing.T) [][]byte // applied first, each must succeed
		cmd     func(t *testing.T) []byte
		wantErr error
		wantMsg string
		check   func(t *testing.T, s *State, index uint64)
	}{
		{
			name: "bootstrap creates default",
			cmd:  func(t *testing.T) []byte { return must(t)(BootstrapCommand(1234)) },
			check: func(t *testing.T, s *State, index uint64) {
				p, err := s.Project(DefaultProject)
				if err != nil {
					t.Fatal(err)
				}
				if p.CreatedAt != 1234 || p.CreateIndex != index || p.ModifyIndex != index {
					t.Fatalf("default = %+v", p)
				}
			},
		},
		{
			name:  "bootstrap is idempotent",
			setup: func(t *testing.T) [][]byte { return [][]byte{must(t)(BootstrapCommand(1))} },
			cmd:   func(t *testing.T) []byte { return must(t)(BootstrapCommand(2)) },
			check: func(t *testing.T, s *State, index uint64) {
				p, _ := s.Project(DefaultProject)
				if p.CreatedAt != 1 || p.CreateIndex != 1 || s.Count(TableProjects) != 1 {
					t.Fatalf("default = %+v", p)
				}
			},
		},
		{
			name: "project create",
			cmd:  func(t *testing.T) []byte { return must(t)(ProjectCreateCommand(*fullProject("p1"))) },
			check: func(t *testing.T, s *State, index uint64) {
				p, err := s.Project("p1")
				if err != nil || p.Description != "project p1" || p.CreateIndex != index || p.ModifyIndex != index {
					t.Fatalf("p1 = %+v, %v", p, err)
				}
			},
		},
		{
			name: "project create ignores caller's raft indexes",
			cmd: func(t *testing.T) []byte {
				p := fullProject("p1")
				p.CreateIndex, p.ModifyIndex = 99, 99
				return must(t)(ProjectCreateCommand(*p))
			},
			check: func(t *testing.T, s *State, index uint64) {
				if p, _ := s.Project("p1"); p.CreateIndex != index || p.ModifyIndex != index {
					t.Fatalf("p1 = %+v", p)
				}
			},
		},
		{
			name:    "project create conflict",
			setup:   func(t *testing.T) [][]byte { return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"}))} },
			cmd:     func(t *testing.T) []byte { return must(t)(ProjectCreateCommand(Project{Name: "p1"})) },
			wantErr: ErrConflict, wantMsg: `project "p1" already exists`,
		},
		{
			name:    "project create without name",
			cmd:     func(t *testing.T) []byte { return must(t)(ProjectCreateCommand(Project{})) },
			wantErr: ErrInvalid,
		},
		{
			name:  "project delete",
			setup: func(t *testing.T) [][]byte { return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"}))} },
			cmd:   func(t *testing.T) []byte { return must(t)(ProjectDeleteCommand("p1")) },
			check: func(t *testing.T, s *State, index uint64) {
				if _, err := s.Project("p1"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("p1 still there: %v", err)
				}
			},
		},
		{
			name:    "project delete not found",
			cmd:     func(t *testing.T) []byte { return must(t)(ProjectDeleteCommand("nope")) },
			wantErr: ErrNotFound, wantMsg: `project "nope" not found`,
		},
		{
			name:    "project delete default",
			setup:   func(t *testing.T) [][]byte { return [][]byte{must(t)(BootstrapCommand(1))} },
			cmd:     func(t *testing.T) []byte { return must(t)(ProjectDeleteCommand(DefaultProject)) },
			wantErr: ErrConflict, wantMsg: "cannot be deleted",
		},
		{
			name:    "project delete default through generic delete",
			setup:   func(t *testing.T) [][]byte { return [][]byte{must(t)(BootstrapCommand(1))} },
			cmd:     func(t *testing.T) []byte { return must(t)(DeleteCommand(TableProjects, DefaultProject, 0)) },
			wantErr: ErrConflict, wantMsg: "cannot be deleted",
		},
		{
			name:    "put into unknown table",
			cmd:     func(t *testing.T) []byte { return must(t)(Encode(CmdPut, &Put{Table: "nope", Record: []byte{0x80}})) },
			wantErr: ErrInvalid, wantMsg: `unknown table "nope"`,
		},
		{
			name: "put with undecodable record",
			cmd: func(t *testing.T) []byte {
				return must(t)(Encode(CmdPut, &Put{Table: TableJobs, Record: []byte{0xc1}}))
			},
			wantErr: ErrInvalid,
		},
		{
			name:    "put without id",
			setup:   func(t *testing.T) [][]byte { return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"}))} },
			cmd:     func(t *testing.T) []byte { return put(t, TableJobs, &Job{Project: "p1"}) },
			wantErr: ErrInvalid, wantMsg: "id is required",
		},
		{
			name:    "put without project",
			cmd:     func(t *testing.T) []byte { return put(t, TableJobs, &Job{ID: "j1"}) },
			wantErr: ErrInvalid, wantMsg: "project is required",
		},
		{
			name:    "put into missing project",
			cmd:     func(t *testing.T) []byte { return put(t, TableJobs, job("j1", "ghost")) },
			wantErr: ErrNotFound, wantMsg: `project "ghost" not found`,
		},
		{
			name:    "put token into missing project",
			cmd:     func(t *testing.T) []byte { return put(t, TableTokens, fullToken("t1", "ghost")) },
			wantErr: ErrNotFound, wantMsg: `project "ghost" not found`,
		},
		{
			name: "put token for any project",
			cmd:  func(t *testing.T) []byte { return put(t, TableTokens, fullToken("t1", "")) },
			check: func(t *testing.T, s *State, index uint64) {
				if tok, err := s.TokenByHash("hash-t1"); err != nil || tok.ID != "t1" {
					t.Fatalf("token = %+v, %v", tok, err)
				}
			},
		},
		{
			name:    "put token without hash",
			cmd:     func(t *testing.T) []byte { return put(t, TableTokens, &Token{ID: "t1"}) },
			wantErr: ErrInvalid, wantMsg: "hash",
		},
		{
			name: "put project record (no project check)",
			cmd:  func(t *testing.T) []byte { return put(t, TableProjects, fullProject("p9")) },
			check: func(t *testing.T, s *State, index uint64) {
				if _, err := s.Project("p9"); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:  "put creates",
			setup: func(t *testing.T) [][]byte { return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"}))} },
			cmd:   func(t *testing.T) []byte { return put(t, TableJobs, job("j1", "p1")) },
			check: func(t *testing.T, s *State, index uint64) {
				j, err := s.Job("j1")
				if err != nil || j.CreateIndex != index || j.ModifyIndex != index || string(j.Payload) != `{"a":1}` {
					t.Fatalf("job = %+v, %v", j, err)
				}
			},
		},
		{
			name: "put updates and keeps CreateIndex",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})), put(t, TableJobs, job("j1", "p1"))}
			},
			cmd: func(t *testing.T) []byte {
				j := job("j1", "p1")
				j.Name = "renamed"
				j.CreateIndex = 77 // ignored
				return put(t, TableJobs, j)
			},
			check: func(t *testing.T, s *State, index uint64) {
				j, _ := s.Job("j1")
				if j.Name != "renamed" || j.CreateIndex != 2 || j.ModifyIndex != index {
					t.Fatalf("job = %+v", j)
				}
			},
		},
		{
			name: "put IfAbsent conflict",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})), put(t, TableJobs, job("j1", "p1"))}
			},
			cmd: func(t *testing.T) []byte {
				return must(t)(PutCommand(TableJobs, job("j1", "p1"), PutOptions{IfAbsent: true}))
			},
			wantErr: ErrConflict, wantMsg: `job "j1" already exists`,
		},
		{
			name:  "put IfAbsent creates",
			setup: func(t *testing.T) [][]byte { return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"}))} },
			cmd: func(t *testing.T) []byte {
				return must(t)(PutCommand(TableJobs, *job("j1", "p1"), PutOptions{IfAbsent: true})) // by value
			},
			check: func(t *testing.T, s *State, index uint64) {
				if _, err := s.Job("j1"); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "put IfIndex matches",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})), put(t, TableJobs, job("j1", "p1"))}
			},
			cmd: func(t *testing.T) []byte {
				j := job("j1", "p1")
				j.Status = JobPaused
				return must(t)(PutCommand(TableJobs, j, PutOptions{IfIndex: 2}))
			},
			check: func(t *testing.T, s *State, index uint64) {
				if j, _ := s.Job("j1"); j.Status != JobPaused {
					t.Fatalf("job = %+v", j)
				}
			},
		},
		{
			name: "put IfIndex mismatch",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})), put(t, TableJobs, job("j1", "p1"))}
			},
			cmd: func(t *testing.T) []byte {
				return must(t)(PutCommand(TableJobs, job("j1", "p1"), PutOptions{IfIndex: 1}))
			},
			wantErr: ErrConflict, wantMsg: "modified at index 2, not 1",
		},
		{
			name:  "put IfIndex on missing record",
			setup: func(t *testing.T) [][]byte { return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"}))} },
			cmd: func(t *testing.T) []byte {
				return must(t)(PutCommand(TableJobs, job("j1", "p1"), PutOptions{IfIndex: 1}))
			},
			wantErr: ErrNotFound,
		},
		{
			name: "put duplicate job idempotency key",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})), put(t, TableJobs, job("j1", "p1"))}
			},
			cmd: func(t *testing.T) []byte {
				j := job("j2", "p1")
				j.IdempotencyKey = "idem-j1"
				return put(t, TableJobs, j)
			},
			wantErr: ErrConflict, wantMsg: `job idempotency key already used by job "j1"`,
			check: func(t *testing.T, s *State, index uint64) {
				if j, err := s.JobByIdempotencyKey("p1", "idem-j1"); err != nil || j.ID != "j1" {
					t.Fatalf("index repointed: %+v %v", j, err)
				}
			},
		},
		{
			name: "same idempotency key in another project",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})), must(t)(ProjectCreateCommand(Project{Name: "p2"})),
					put(t, TableJobs, job("j1", "p1"))}
			},
			cmd: func(t *testing.T) []byte {
				j := job("j2", "p2")
				j.IdempotencyKey = "idem-j1"
				return put(t, TableJobs, j)
			},
		},
		{
			name: "put duplicate event idempotency key",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})),
					put(t, TableEvents, fullEvent("e1", "p1", EventScheduled, 5))}
			},
			cmd: func(t *testing.T) []byte {
				e := fullEvent("e2", "p1", EventScheduled, 5)
				e.IdempotencyKey = "idem-e1"
				return put(t, TableEvents, e)
			},
			wantErr: ErrConflict, wantMsg: `already used by event "e1"`,
		},
		{
			name: "put duplicate token hash",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{put(t, TableTokens, fullToken("t1", ""))}
			},
			cmd: func(t *testing.T) []byte {
				tok := fullToken("t2", "")
				tok.Hash = "hash-t1"
				return put(t, TableTokens, tok)
			},
			wantErr: ErrConflict, wantMsg: `token hash already used by token "t1"`,
		},
		{
			name: "put duplicate occurrence number",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})),
					put(t, TableOccurrences, fullOccurrence("o1", "j1", "p1", 1, OccurrencePending, 0))}
			},
			cmd: func(t *testing.T) []byte {
				o := fullOccurrence("o2", "j1", "p1", 1, OccurrencePending, 0)
				o.IdentityKey = "other"
				return put(t, TableOccurrences, o)
			},
			wantErr: ErrConflict, wantMsg: `occurrence number within its job already used by occurrence "o1"`,
		},
		{
			name: "put duplicate occurrence identity",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})),
					put(t, TableOccurrences, fullOccurrence("o1", "j1", "p1", 1, OccurrencePending, 0))}
			},
			cmd: func(t *testing.T) []byte {
				o := fullOccurrence("o2", "j1", "p1", 2, OccurrencePending, 0)
				o.IdentityKey = "j1@1"
				return put(t, TableOccurrences, o)
			},
			wantErr: ErrConflict, wantMsg: "identity key",
		},
		{
			name: "update keeps its own unique keys",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})),
					put(t, TableOccurrences, fullOccurrence("o1", "j1", "p1", 1, OccurrencePending, 0))}
			},
			cmd: func(t *testing.T) []byte {
				return put(t, TableOccurrences, fullOccurrence("o1", "j1", "p1", 1, OccurrenceCompleted, 99))
			},
			check: func(t *testing.T, s *State, index uint64) {
				if o, _ := s.OccurrenceByNumber("j1", 1); o.Status != OccurrenceCompleted {
					t.Fatalf("occurrence = %+v", o)
				}
			},
		},
		{
			name: "put attempt (no project)",
			cmd:  func(t *testing.T) []byte { return put(t, TableAttempts, fullAttempt("d1", 1)) },
			check: func(t *testing.T, s *State, index uint64) {
				if a, err := s.Attempt("d1", 1); err != nil || a.ModifyIndex != index {
					t.Fatalf("attempt = %+v, %v", a, err)
				}
			},
		},
		{
			name: "delete",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})), put(t, TableJobs, job("j1", "p1"))}
			},
			cmd: func(t *testing.T) []byte { return must(t)(DeleteCommand(TableJobs, "j1", 0)) },
			check: func(t *testing.T, s *State, index uint64) {
				if s.Count(TableJobs) != 0 || len(s.JobsDue(1<<62, 0)) != 0 {
					t.Fatal("job still there")
				}
				if _, err := s.JobByIdempotencyKey("p1", "idem-j1"); !errors.Is(err, ErrNotFound) {
					t.Fatal("idempotency index still points at the job")
				}
			},
		},
		{
			name:    "delete not found",
			cmd:     func(t *testing.T) []byte { return must(t)(DeleteCommand(TableJobs, "j1", 0)) },
			wantErr: ErrNotFound, wantMsg: `job "j1" not found`,
		},
		{
			name:    "delete from unknown table",
			cmd:     func(t *testing.T) []byte { return must(t)(Encode(CmdDelete, &Delete{Table: "nope", ID: "x"})) },
			wantErr: ErrInvalid,
		},
		{
			name: "delete IfIndex mismatch",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})), put(t, TableJobs, job("j1", "p1"))}
			},
			cmd:     func(t *testing.T) []byte { return must(t)(DeleteCommand(TableJobs, "j1", 1)) },
			wantErr: ErrConflict,
			check: func(t *testing.T, s *State, index uint64) {
				if _, err := s.Job("j1"); err != nil {
					t.Fatal("job deleted despite CAS mismatch")
				}
			},
		},
		{
			name: "delete IfIndex matches",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})), put(t, TableJobs, job("j1", "p1"))}
			},
			cmd: func(t *testing.T) []byte { return must(t)(DeleteCommand(TableJobs, "j1", 2)) },
			check: func(t *testing.T, s *State, index uint64) {
				if s.Count(TableJobs) != 0 {
					t.Fatal("job still there")
				}
			},
		},
		{
			name: "delete attempt",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{put(t, TableAttempts, fullAttempt("d/1", 1)), put(t, TableAttempts, fullAttempt("d/1", 2))}
			},
			cmd: func(t *testing.T) []byte { return must(t)(DeleteCommand(TableAttempts, AttemptID("d/1", 2), 0)) },
			check: func(t *testing.T, s *State, index uint64) {
				if as := s.Attempts("d/1"); len(as) != 1 || as[0].Number != 1 {
					t.Fatalf("attempts = %+v", as)
				}
			},
		},
		{
			name:    "delete attempt with a bad id",
			cmd:     func(t *testing.T) []byte { return must(t)(DeleteCommand(TableAttempts, "d1", 0)) },
			wantErr: ErrInvalid,
		},
	}
	for _, child := range []struct{ table, rec string }{{"tokens", ""}, {"endpoints", ""}, {"jobs", ""}, {"events", ""}} {
		tests = append(tests, struct {
			name    string
			setup   func(t *testing.T) [][]byte
			cmd     func(t *testing.T) []byte
			wantErr error
			wantMsg string
			check   func(t *testing.T, s *State, index uint64)
		}{
			name: "project delete with " + child.table,
			setup: func(t *testing.T) [][]byte {
				var rec any
				switch child.table {
				case TableTokens:
					rec = fullToken("x", "p1")
				case TableEndpoints:
					rec = fullEndpoint("x", "p1")
				case TableJobs:
					rec = job("x", "p1")
				case TableEvents:
					rec = fullEvent("x", "p1", EventScheduled, 1)
				}
				return [][]byte{must(t)(ProjectCreateCommand(Project{Name: "p1"})), put(t, child.table, rec)}
			},
			cmd:     func(t *testing.T) []byte { return must(t)(ProjectDeleteCommand("p1")) },
			wantErr: ErrConflict, wantMsg: `project "p1" still has ` + child.table,
			check: func(t *testing.T, s *State, index uint64) {
				if _, err := s.Project("p1"); err != nil {
					t.Fatal("project deleted")
				}
			},
		})
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.setup != nil {
				h.ok(tc.setup(t)...)
			}
			before := h.f.State()
			res := h.apply(tc.cmd(t))
			if res.Index != h.idx || res.Ignored || res.Results != nil {
				t.Fatalf("result = %+v", res)
			}
			checkErr(t, res.Err, tc.wantErr, tc.wantMsg)
			s := h.f.State()
			if s.Index() != h.idx || h.f.AppliedIndex() != h.idx {
				t.Fatalf("applied index = %d/%d, want %d", s.Index(), h.f.AppliedIndex(), h.idx)
			}
			if res.Err != nil {
				sameState(t, s, before) // a failed command leaves no trace
			}
			if tc.check != nil {
				tc.check(t, s, h.idx)
			}
		})
	}
}

func TestBatch(t *testing.T) {
	h := newHarness(t)
	nested := must(t)(Encode(CmdBatch, &Batch{Commands: [][]byte{must(t)(BootstrapCommand(1))}}))
	batch := must(t)(Encode(CmdBatch, &Batch{Commands: [][]byte{ // BatchCommand would refuse the nested one
		must(t)(ProjectCreateCommand(Project{Name: "p1"})),
		must(t)(ProjectCreateCommand(Project{Name: "p1"})), // conflict
		put(t, TableJobs, fullJob("j1", "p1", 10)),         // sees p1 from the same txn
		put(t, TableJobs, fullJob("j2", "ghost", 10)),      // not found
		nested,
		[]byte{0x80 | 0x33, 0xc0}, // unknown ignorable
		put(t, TableJobs, fullJob("j3", "p1", 20)),
	}}))
	res := h.apply(batch)
	if res.Err != nil || res.Index != 1 || len(res.Results) != 7 {
		t.Fatalf("batch result = %+v", res)
	}
	want := []error{nil, ErrConflict, nil, ErrNotFound, ErrInvalid, nil, nil}
	for i, r := range res.Results {
		if r.Index != 1 {
			t.Errorf("sub %d index = %d", i, r.Index)
		}
		if (want[i] == nil) != (r.Err == nil) || (want[i] != nil && !errors.Is(r.Err, want[i])) {
			t.Errorf("sub %d err = %v, want %v", i, r.Err, want[i])
		}
	}
	if !res.Results[5].Ignored {
		t.Error("unknown ignorable sub-command not marked Ignored")
	}
	s := h.f.State()
	if s.Count(TableProjects) != 1 || s.Count(TableJobs) != 2 {
		t.Fatalf("projects=%d jobs=%d", s.Count(TableProjects), s.Count(TableJobs))
	}
	for _, id := range []string{"j1", "j3"} {
		if j, _ := s.Job(id); j.CreateIndex != 1 || j.ModifyIndex != 1 {
			t.Errorf("%s = %+v", id, j)
		}
	}

	if _, err := BatchCommand(nested); err == nil {
		t.Error("BatchCommand accepted a nested batch")
	}
	if _, err := BatchCommand(nil); err == nil {
		t.Error("BatchCommand accepted an empty command")
	}
}

// A guarded batch applies nothing unless its guard record is still at the
// given index; StopOnError skips everything after the first failure.
func TestBatchGuardAndStopOnError(t *testing.T) {
	h := newHarness(t)
	h.apply(must(t)(ProjectCreateCommand(Project{Name: "p1"}))) // index 1
	claim := &IdempotencyRecord{ID: "p1/k", Fingerprint: "f", ClaimUntil: 5, ExpiresAt: 10}
	h.apply(put(t, TableIdempotency, claim)) // index 2
	guarded := func(ifIndex uint64, cmds ...[]byte) []byte {
		return must(t)(Encode(CmdBatch, &Batch{Guard: &Guard{Table: TableIdempotency, ID: "p1/k", IfIndex: ifIndex}, StopOnError: true, Commands: cmds}))
	}

	// A stale guard: nothing at all is applied.
	res := h.apply(guarded(1, put(t, TableJobs, fullJob("j1", "p1", 10))))
	if !errors.Is(res.Err, ErrConflict) || len(res.Results) != 0 {
		t.Fatalf("stale guard: %+v", res)
	}
	if _, err := h.f.State().Job("j1"); err == nil {
		t.Fatal("a batch with a stale guard created its job")
	}
	if res := h.apply(must(t)(Encode(CmdBatch, &Batch{Guard: &Guard{Table: TableIdempotency, ID: "p1/none", IfIndex: 2}, Commands: [][]byte{put(t, TableJobs, fullJob("j1", "p1", 10))}}))); !errors.Is(res.Err, ErrNotFound) {
		t.Fatalf("guard on a missing record: %+v", res)
	}

	// A current guard; the second command fails, so the third is skipped.
	marked := *claim
	marked.Applied = true
	res = h.apply(guarded(2,
		put(t, TableJobs, fullJob("j2", "p1", 10)),
		put(t, TableJobs, fullJob("j3", "ghost", 10)), // not found
		must(t)(PutCommand(TableIdempotency, &marked, PutOptions{IfIndex: 2})),
	))
	if res.Err != nil || len(res.Results) != 3 || res.Results[0].Err != nil || !errors.Is(res.Results[1].Err, ErrNotFound) || !errors.Is(res.Results[2].Err, ErrConflict) {
		t.Fatalf("stop on error: %+v %+v %+v", res, res.Results[1], res.Results[2])
	}
	if rec, _ := h.f.State().Idempotency("p1/k"); rec.Applied || rec.ModifyIndex != 2 {
		t.Fatalf("the command after the failure was applied: %+v", rec)
	}

	// All succeed: the write and the mark land together.
	res = h.apply(guarded(2, put(t, TableJobs, fullJob("j4", "p1", 10)), must(t)(PutCommand(TableIdempotency, &marked, PutOptions{IfIndex: 2}))))
	if res.Err != nil || res.Results[0].Err != nil || res.Results[1].Err != nil {
		t.Fatalf("guarded batch: %+v", res)
	}
	if rec, _ := h.f.State().Idempotency("p1/k"); !rec.Applied || rec.ModifyIndex != res.Index {
		t.Fatalf("mark: %+v", rec)
	}
}

func TestBatchWithUnknownCommandPanics(t *testing.T) {
	h := newHarness(t)
	batch := must(t)(BatchCommand(must(t)(BootstrapCommand(1)), []byte{0x33, 0xc0}))
	msg := mustPanic(t, func() { h.apply(batch) })
	if !strings.Contains(msg, "unknown command type 51") {
		t.Fatalf("panic = %q", msg)
	}
	// The transaction was aborted: nothing of the batch is visible and the
	// writer lock was released.
	if s := h.f.State(); s.Count(TableProjects) != 0 {
		t.Fatal("partial batch committed")
	}
	h.ok(must(t)(BootstrapCommand(1)))
}

func mustPanic(t *testing.T, fn func()) (msg string) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("did not panic")
		}
		msg = fmt.Sprint(r)
	}()
	fn()
	return ""
}

func TestUnknownAndCorruptCommands(t *testing.T) {
	tests := []struct {
		name      string
		data      []byte
		wantPanic string // "" = must be skipped
	}{
		{"unknown ignorable", []byte{0x80 | 0x05, 0x81, 0xa1, 'x', 0x01}, ""},
		{"unknown ignorable with any body", []byte{0xff, 0xc1, 0xc1}, ""},
		{"unknown non-ignorable", []byte{0x7f, 0x80}, "unknown command type 127 (0x7f) at raft index 2"},
		{"type zero", []byte{0x00}, "unknown command type 0"},
		{"empty command", nil, "empty command at raft index 2"},
		{"corrupt put body", []byte{byte(CmdPut), 0xc1}, "corrupt put command at raft index 2"},
		{"corrupt batch body", []byte{byte(CmdBatch), 0x81, 0xa4, 'c', 'm', 'd', 's', 0x01}, "corrupt batch command"},
		{"truncated bootstrap body", []byte{byte(CmdBootstrap), 0x81, 0xa2, 'a'}, "corrupt bootstrap command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(must(t)(BootstrapCommand(1)))
			before := h.f.State()
			if tc.wantPanic == "" {
				res := h.apply(tc.data)
				if !res.Ignored || res.Err != nil || res.Index != 2 {
					t.Fatalf("result = %+v", res)
				}
				if h.f.AppliedIndex() != 2 {
					t.Fatalf("applied = %d", h.f.AppliedIndex())
				}
				sameState(t, h.f.State(), before)
				return
			}
			msg := mustPanic(t, func() { h.apply(tc.data) })
			if !strings.Contains(msg, tc.wantPanic) {
				t.Fatalf("panic = %q, want it to contain %q", msg, tc.wantPanic)
			}
			if h.f.AppliedIndex() != 1 {
				t.Fatalf("applied index advanced to %d past a refused command", h.f.AppliedIndex())
			}
		})
	}
}

func TestApplyBatchEqualsApply(t *testing.T) {
	cmds := [][]byte{
		must(t)(BootstrapCommand(1)),
		must(t)(ProjectCreateCommand(Project{Name: "p1"})),
		must(t)(ProjectCreateCommand(Project{Name: "p1"})), // conflict
		put(t, TableJobs, fullJob("j1", "p1", 5)),
		put(t, TableJobs, fullJob("j2", "p1", 6)),
		must(t)(DeleteCommand(TableJobs, "j1", 0)),
		must(t)(PutCommand(TableJobs, fullJob("j2", "p1", 7), PutOptions{IfIndex: 7})), // j2 is put at index 7 (a config log precedes it)
		must(t)(BatchCommand(put(t, TableEvents, fullEvent("e1", "p1", EventScheduled, 3)), must(t)(DeleteCommand(TableJobs, "zz", 0)))),
		{0x99},
	}
	// Interleave non-command logs, which must be skipped but still counted.
	var logs []*raft.Log
	idx := uint64(0)
	for i, c := range cmds {
		if i%3 == 1 {
			idx++
			logs = append(logs, &raft.Log{Index: idx, Term: 2, Type: raft.LogConfiguration, Data: []byte("not a command")})
		}
		idx++
		logs = append(logs, &raft.Log{Index: idx, Term: 2, Type: raft.LogCommand, Data: c})
	}
	idx++
	logs = append(logs, &raft.Log{Index: idx, Term: 2, Type: raft.LogNoop})

	one := New(slog.New(slog.DiscardHandler))
	var oneRes []interface{}
	for _, l := range logs {
		if l.Type == raft.LogCommand {
			oneRes = append(oneRes, one.Apply(l))
		} else {
			oneRes = append(oneRes, nil)
		}
	}
	batched := New(slog.New(slog.DiscardHandler))
	batchRes := batched.ApplyBatch(logs)

	if len(batchRes) != len(logs) {
		t.Fatalf("%d responses for %d logs", len(batchRes), len(logs))
	}
	for i := range logs {
		a, b := oneRes[i], batchRes[i]
		if (a == nil) != (b == nil) {
			t.Fatalf("log %d: response %v vs %v", i, a, b)
		}
		if a == nil {
			if logs[i].Type == raft.LogCommand {
				t.Fatalf("log %d: nil response for a command", i)
			}
			continue
		}
		if fmt.Sprintf("%+v", flatten(a.(*Result))) != fmt.Sprintf("%+v", flatten(b.(*Result))) {
			t.Fatalf("log %d: %+v vs %+v", i, flatten(a.(*Result)), flatten(b.(*Result)))
		}
	}
	sameState(t, batched.State(), one.State())
	if batched.AppliedIndex() != idx || batched.State().Index() != idx || batched.State().Term() != 2 {
		t.Fatalf("applied = %d / %d, want %d", batched.AppliedIndex(), batched.State().Index(), idx)
	}
	if j, _ := batched.State().Job("j2"); j.NextFireAt != 7 {
		t.Fatalf("CAS update inside ApplyBatch not applied: %+v", j)
	}
	if got := batched.ApplyBatch(nil); len(got) != 0 {
		t.Fatal("empty batch")
	}
}

// flatten renders a result tree with error messages, for comparison.
func flatten(r *Result) []string {
	out := []string{fmt.Sprintf("%d %v %v", r.Index, r.Err, r.Ignored)}
	for _, s := range r.Results {
		out = append(out, flatten(s)...)
	}
	return out
}
