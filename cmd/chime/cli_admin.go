package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/chime-sched/chime/client"
)

func init() {
	registerGroup("tokens", "API tokens (admin)",
		command{name: "create", summary: "create a token (--name, --scopes); prints its secret, once", setup: tokensCreate,
			fields: map[string]string{"project": "--bind-project"}},
		command{name: "list", summary: "list tokens, without secrets", setup: tokensList},
		command{name: "revoke", args: []string{"TOKEN_ID"}, summary: "revoke a token on every node", setup: tokensRevoke},
	)
	registerGroup("projects", "tenants: every job, endpoint and event belongs to one",
		command{name: "create", args: []string{"NAME"}, summary: "create a project", setup: projectsCreate},
		command{name: "list", summary: "list projects", setup: projectsList},
		command{name: "get", args: []string{"NAME"}, summary: "show a project", setup: projectsGet},
		command{name: "delete", args: []string{"NAME"}, summary: "delete an empty project", setup: projectsDelete},
		command{name: "set-target-cidrs", args: []string{"NAME"}, summary: "set the internal ranges a project's deliveries may reach (cluster admin)",
			fields: map[string]string{"allowedTargetCidrs": "--cidrs"}, setup: projectsSetTargetCIDRs},
	)
	registerGroup("cluster", "the nodes and their Raft roles",
		command{name: "status", summary: "members, roles, leader and Raft indexes as the node sees them", setup: clusterStatus},
		command{name: "transfer-leadership", summary: "hand leadership to another voter (--to, else the most up-to-date)", setup: clusterTransfer},
		command{name: "remove-peer", args: []string{"NODE_ID"}, summary: "remove a dead server from the Raft configuration", setup: clusterRemovePeer},
		command{name: "health", summary: "exit 0 if the node is up (--ready: and ready to serve), else 1 with the reason; for health checks", setup: clusterHealth},
	)
	registerGroup("snapshot", "back up and restore the whole cluster state",
		command{name: "save", args: []string{"FILE"}, summary: "download a consistent snapshot into FILE (- for stdout)", setup: snapshotSave},
		command{name: "restore", args: []string{"FILE"}, summary: "replace the whole cluster state with FILE (needs --yes)", setup: snapshotRestore},
	)
}

func tokensCreate(fs *flag.FlagSet) func(*cliEnv, []string) error {
	name := fs.String("name", "", "what the token is for, e.g. ci-deploy")
	var scopes listFlag
	fs.Var(&scopes, "scopes", "`scopes`: read, write and/or admin, comma-separated (each includes the ones before it)")
	bind := fs.String("bind-project", "", "restrict the token to this project (default: every project)")
	expires := fs.String("expires", "", "when it stops working: an RFC 3339 time, or a duration from now such as 720h")
	return func(e *cliEnv, _ []string) error {
		if *name == "" {
			return usagef("--name is required: what the token is for")
		}
		if len(scopes) == 0 {
			return usagef("--scopes is required: read, write and/or admin")
		}
		req := client.TokenRequest{Name: *name, Scopes: scopes, Project: *bind}
		if *expires != "" {
			if d, err := time.ParseDuration(*expires); err == nil {
				req.ExpiresAt = time.Now().Add(d).UTC().Format(time.RFC3339)
			} else if _, err := parseInstant("--expires", *expires); err != nil {
				return usagef("--expires %q: use an RFC 3339 time (2027-01-01T00:00:00Z) or a duration (720h)", *expires)
			} else {
				req.ExpiresAt = *expires
			}
		}
		tok, err := e.c.CreateToken(e.ctx, req)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) {
			tokenDetail(w, &tok.Token)
			kv(w, "token", tok.Secret+"   (shown once: Chime keeps only its hash)")
		})
	}
}

func tokensList(fs *flag.FlagSet) func(*cliEnv, []string) error {
	lo := listOpts(fs)
	return func(e *cliEnv, _ []string) error {
		page, err := e.c.ListTokens(e.ctx, *lo)
		if err != nil {
			return err
		}
		return e.printPage("chime tokens list", page.NextCursor, func(w io.Writer) {
			row(w, "ID", "NAME", "PREFIX", "SCOPES", "PROJECT", "EXPIRES", "REVOKED")
			for _, t := range page.Items {
				row(w, t.ID, t.Name, t.Prefix, strings.Join(t.Scopes, ","), orDash(deref(t.Project)), fmtTime(t.ExpiresAt), strconv.FormatBool(t.Revoked))
			}
		})
	}
}

func tokensRevoke(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, args []string) error {
		tok, err := e.c.RevokeToken(e.ctx, args[0])
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { tokenDetail(w, tok) })
	}
}

func tokenDetail(w io.Writer, t *client.Token) {
	kv(w, "id", t.ID, "name", t.Name, "prefix", t.Prefix, "scopes", strings.Join(t.Scopes, ","),
		"project", orDash(deref(t.Project)), "expires", fmtTime(t.ExpiresAt), "revoked", strconv.FormatBool(t.Revoked),
		"created", fmtTime(&t.CreatedAt), "created by", t.CreatedBy)
}

func projectsCreate(fs *flag.FlagSet) func(*cliEnv, []string) error {
	desc := fs.String("description", "", "a description for people")
	return func(e *cliEnv, args []string) error {
		p, err := e.c.CreateProject(e.ctx, client.ProjectRequest{Name: args[0], Description: *desc})
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { projectDetail(w, p) })
	}
}

func projectsList(fs *flag.FlagSet) func(*cliEnv, []string) error {
	lo := listOpts(fs)
	return func(e *cliEnv, _ []string) error {
		page, err := e.c.ListProjects(e.ctx, *lo)
		if err != nil {
			return err
		}
		return e.printPage("chime projects list", page.NextCursor, func(w io.Writer) {
			row(w, "NAME", "DESCRIPTION", "CREATED")
			for _, p := range page.Items {
				row(w, p.Name, orDash(p.Description), fmtTime(&p.CreatedAt))
			}
		})
	}
}

func projectsGet(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, args []string) error {
		p, err := e.c.GetProject(e.ctx, args[0])
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { projectDetail(w, p) })
	}
}

func projectDetail(w io.Writer, p *client.Project) {
	ranges := "the nodes' --allowed-target-cidrs"
	if p.AllowedTargetCIDRs != nil {
		ranges = orDash(strings.Join(*p.AllowedTargetCIDRs, ","))
	}
	kv(w, "name", p.Name, "description", p.Description, "target ranges", ranges,
		"created", fmtTime(&p.CreatedAt), "updated", fmtTime(&p.UpdatedAt))
}

func projectsSetTargetCIDRs(fs *flag.FlagSet) func(*cliEnv, []string) error {
	cidrs := fs.String("cidrs", "", `comma-separated CIDR ranges (within the nodes' --allowed-target-cidrs), "none", or "inherit" (the nodes' ranges)`)
	return func(e *cliEnv, args []string) error {
		var list []string
		switch *cidrs {
		case "":
			return usagef(`--cidrs is required: ranges such as 10.20.3.0/24,10.20.4.0/24, "none" or "inherit"`)
		case "inherit":
		case "none":
			list = []string{}
		default:
			list = strings.Split(*cidrs, ",")
		}
		p, err := e.c.SetProjectTargetCIDRs(e.ctx, args[0], list)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { projectDetail(w, p) })
	}
}

func projectsDelete(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, args []string) error {
		if err := e.c.DeleteProject(e.ctx, args[0]); err != nil {
			return err
		}
		// The API answers 204: there is no JSON to print.
		if !e.json {
			fmt.Fprintf(e.stdout, "deleted project %s\n", args[0])
		}
		return nil
	}
}

func clusterStatus(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, _ []string) error {
		st, err := e.c.ClusterStatus(e.ctx)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { statusTable(w, st) })
	}
}

func statusTable(w io.Writer, st *client.ClusterStatus) {
	leader := "none"
	if st.Leader != nil && st.Leader.ID != "" {
		leader = st.Leader.ID + " (" + st.Leader.HTTPAddr + ")"
	}
	kv(w, "node", st.NodeID, "leader", leader, "term", strconv.FormatUint(st.Raft.Term, 10),
		"raft indexes", fmt.Sprintf("last %d, commit %d, applied %d", st.Raft.LastIndex, st.Raft.CommitIndex, st.Raft.AppliedIndex))
	fmt.Fprintln(w)
	row(w, "ID", "RAFT", "GOSSIP", "HTTP", "RAFT ADDR", "VERSION")
	for _, n := range st.Nodes {
		row(w, n.ID, n.Raft, n.Gossip, orDash(n.HTTPAddr), orDash(n.RaftAddr), orDash(n.Version))
	}
}

func clusterTransfer(fs *flag.FlagSet) func(*cliEnv, []string) error {
	to := fs.String("to", "", "node id of the new leader (default: the most up-to-date voter)")
	return func(e *cliEnv, _ []string) error {
		st, err := e.c.TransferLeadership(e.ctx, *to)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { statusTable(w, st) })
	}
}

func clusterRemovePeer(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, args []string) error {
		if err := e.c.RemovePeer(e.ctx, args[0]); err != nil {
			return err
		}
		if !e.json {
			fmt.Fprintf(e.stdout, "removed %s from the Raft configuration\n", args[0])
		}
		return nil
	}
}

// clusterHealth is what a container health check runs: the image has no
// shell and no curl, only this binary.
func clusterHealth(fs *flag.FlagSet) func(*cliEnv, []string) error {
	ready := fs.Bool("ready", false, "also require readiness: a known leader, caught up, initial state present (GET /v1/ready)")
	return func(e *cliEnv, _ []string) error {
		check, what := e.c.Health, "up"
		if *ready {
			check, what = e.c.Ready, "ready"
		}
		h, err := check(e.ctx)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { fmt.Fprintf(w, "%s is %s\n", h.NodeID, what) })
	}
}

func snapshotSave(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, args []string) error {
		path := args[0]
		if path == "-" {
			_, err := e.c.SaveSnapshot(e.ctx, e.stdout)
			return err
		}
		// Into a temporary file renamed at the end, so FILE never holds a
		// partial download (which could not be restored anyway).
		f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-*")
		if err != nil {
			return usagef("cannot write next to %s: %v", path, err)
		}
		n, err := e.c.SaveSnapshot(e.ctx, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			os.Remove(f.Name())
			return err
		}
		if e.json {
			// The download is the snapshot itself; this is the CLI's own
			// summary of where it went.
			b, _ := json.Marshal(map[string]any{"file": path, "bytes": n})
			_, err := fmt.Fprintf(e.stdout, "%s\n", b)
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "saved snapshot to %s (%d bytes)\n", path, n)
		return err
	}
}

func snapshotRestore(fs *flag.FlagSet) func(*cliEnv, []string) error {
	yes := fs.Bool("yes", false, "confirm: the cluster's whole state is replaced by the snapshot")
	foreign := fs.Bool("foreign", false, "accept a snapshot this cluster did not sign (another cluster's, or saved by a release before signing); its integrity cannot be checked")
	return func(e *cliEnv, args []string) error {
		if !*yes {
			return usagef("restore replaces every job, endpoint, token and delivery of the cluster with the snapshot's; run it again with --yes")
		}
		f, err := os.Open(args[0])
		if errors.Is(err, os.ErrNotExist) {
			return usagef("%s does not exist", args[0])
		}
		if err != nil {
			return err
		}
		defer f.Close()
		r, err := e.c.RestoreSnapshot(e.ctx, f, client.RestoreOptions{Foreign: *foreign})
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) {
			fmt.Fprintf(w, "restored %s: applied index %d, in %d ms\n", args[0], r.AppliedIndex, r.DurationMs)
		})
	}
}
