package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/cmd/omnictl/internal/client"
)

// listCmd: omnictl list [--service --task --domain --status --since --until --limit] [--watch].
func (a *app) listCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	var f client.ListFilter
	fs.StringVar(&f.Service, "service", "", "the jobs of this service (default: $OMNI_SERVICE or the config file's; may be left out when you are scoped to one service)")
	fs.StringVar(&f.Task, "task", "", "only jobs of this job type")
	fs.StringVar(&f.Domain, "domain", "", "only jobs of this domain")
	fs.StringVar(&f.Status, "status", "", "only jobs in this status (queued, pending, running, succeeded, failed, cancelled, lost)")
	since := fs.String("since", "", "only jobs created at or after this time: RFC 3339, or a duration before now (e.g. 2h)")
	until := fs.String("until", "", "only jobs created before this time: RFC 3339, or a duration before now")
	limit := fs.Int("limit", 50, "at most this many jobs (1-1000 per page; more are read page by page)")
	watch := fs.Bool("watch", false, "keep listing: redraw on a terminal, else print each job again when it changes")
	interval := fs.Duration("interval", 2*time.Second, "how often --watch asks")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args); err != nil {
			return err
		}
		var err error
		now := time.Now()
		if f.Since, err = parseWhen(*since, now); err != nil {
			return usageError("--since: %v", err)
		}
		if f.Until, err = parseWhen(*until, now); err != nil {
			return usageError("--until: %v", err)
		}
		if *limit < 1 {
			return usageError("--limit %d: want at least 1", *limit)
		}
		c, cfg, err := a.client()
		if err != nil {
			return err
		}
		f.Service = firstOf(f.Service, cfg.Service)
		if !*watch {
			jobs, err := listJobs(ctx, c, f, *limit)
			if err != nil {
				return err
			}
			return a.printJobs(jobs)
		}
		return a.watchJobs(ctx, c, f, *limit, *interval)
	}
}

// parseWhen reads an RFC 3339 time, or a duration before now; "" is the zero time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2026-11-27T19:00:00Z) or a duration (2h)", s)
	}
	return t, nil
}

// listJobs reads up to limit jobs, page by page.
func listJobs(ctx context.Context, c *client.Client, f client.ListFilter, limit int) ([]*client.Job, error) {
	var out []*client.Job
	token := ""
	for len(out) < limit {
		f.Limit = min(limit-len(out), 1000)
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		p, err := c.List(rctx, f, token)
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, p.Jobs...)
		if token = p.NextPageToken; token == "" {
			break
		}
	}
	return out, nil
}

// printJobs prints jobs: -o json|yaml as {"jobs": [...]}, else a table.
func (a *app) printJobs(jobs []*client.Job) error {
	raws := make([]json.RawMessage, len(jobs))
	for i, j := range jobs {
		raws[i] = j.JSON()
	}
	return a.printRaw(jsonList("jobs", raws), func() {
		t := a.newTable(jobHeader...)
		now := time.Now()
		for _, j := range jobs {
			t.row(jobRow(j, now)...)
		}
		t.flush()
	})
}

// jobHeader and jobRow are a job's row in tables.
var jobHeader = []string{"ID", "SERVICE", "TASK", "ARCH", "STATUS", "AGE", "DURATION", "REASON"}

func jobRow(j *client.Job, now time.Time) []string {
	reason := j.Reason
	if s := j.FailedStep(); s != nil {
		reason = strings.TrimSpace(reason + " (step " + s.Name + ")")
	}
	if j.Status == "queued" && j.Queue != nil {
		reason = fmt.Sprintf("#%d %s", j.Queue.Position, j.Queue.Reason)
	}
	return []string{j.ID, j.Service, j.Task, j.Arch, j.Status, age(j.CreatedAt, now), duration(j.StartedAt, j.FinishedAt, now), orDash(reason)}
}

// watchJobs lists again every interval until ctx ends: on a terminal with tables it redraws
// the screen; otherwise it prints each job once and again whenever its revision changes (one
// row, or one JSON/YAML document per line of change).
func (a *app) watchJobs(ctx context.Context, c *client.Client, f client.ListFilter, limit int, interval time.Duration) error {
	redraw := a.stdoutTTY && a.format() == "table"
	seen := map[string]int64{}
	var tab *table // made once: its header is printed once
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		jobs, err := listJobs(ctx, c, f, limit)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			fmt.Fprintln(a.stderr, "omnictl:", oneLine(err.Error()))
		case redraw:
			fmt.Fprint(a.stdout, "\033[H\033[2J")
			fmt.Fprintf(a.stdout, "every %s, %s (Ctrl-C ends)\n\n", interval, time.Now().Format(time.TimeOnly))
			if err := a.printJobs(jobs); err != nil {
				return err
			}
		default:
			now := time.Now()
			if tab == nil && a.format() == "table" {
				tab = a.newTable(jobHeader...)
			}
			// Oldest first, so that lines read in the order things happened.
			for i := len(jobs) - 1; i >= 0; i-- {
				j := jobs[i]
				if rev, ok := seen[j.ID]; ok && rev == j.Revision {
					continue
				}
				seen[j.ID] = j.Revision
				switch a.format() {
				case "json":
					fmt.Fprintln(a.stdout, string(j.JSON()))
				case "yaml":
					b, err := jsonToYAML(j.JSON())
					if err != nil {
						return err
					}
					fmt.Fprintf(a.stdout, "---\n%s", b)
				default:
					tab.row(jobRow(j, now)...)
				}
			}
			if tab != nil {
				tab.flush()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
