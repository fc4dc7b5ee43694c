package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/cmd/omnictl/internal/client"
)

// requestTimeout bounds one request that is not a stream.
const requestTimeout = time.Minute

// call runs a command made of one API request: it checks the positional arguments against
// names, makes the client and bounds the request by requestTimeout.
func (a *app) call(ctx context.Context, args, names []string, do func(context.Context, *client.Client) error) error {
	if err := wantArgs(args, names...); err != nil {
		return err
	}
	c, _, err := a.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return do(ctx, c)
}

// getCmd: omnictl get ID.
func (a *app) getCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		return a.call(ctx, args, []string{"ID"}, func(ctx context.Context, c *client.Client) error {
			j, err := c.Job(ctx, args[0])
			if err != nil {
				return err
			}
			return a.printJob(j)
		})
	}
}

// printJob prints one job: in a table, its fields then its steps.
func (a *app) printJob(j *client.Job) error {
	return a.printRaw(j.JSON(), func() {
		now := time.Now()
		t := a.newTable("FIELD", "VALUE")
		t.row("id", j.ID)
		t.row("service", j.Service)
		t.row("task", j.Task)
		t.row("domain", orDash(j.Domain))
		t.row("arch", j.Arch)
		t.row("cluster", orDash(j.Cluster))
		t.row("status", j.Status)
		if j.Reason != "" || j.Message != "" {
			t.row("reason", strings.TrimSpace(j.Reason+" "+j.Message))
		}
		if j.Queue != nil && j.Queue.Position > 0 {
			t.row("queue", fmt.Sprintf("position %d: %s", j.Queue.Position, j.Queue.Reason))
		}
		if len(j.Parameters) > 0 && string(j.Parameters) != "null" {
			t.row("parameters", string(j.Parameters))
		}
		for _, k := range slices.Sorted(maps.Keys(j.Labels)) {
			t.row("label", k+"="+j.Labels[k])
		}
		if j.Attempt > 1 {
			t.row("attempt", fmt.Sprint(j.Attempt))
		}
		for _, at := range j.Attempts {
			t.row(fmt.Sprintf("attempt %d", at.Number), strings.TrimSpace(at.Status+" "+at.Reason+" "+at.Message))
		}
		if j.RerunOf != "" {
			t.row("rerun of", j.RerunOf)
		}
		if len(j.Reruns) > 0 {
			t.row("reruns", strings.Join(j.Reruns, " "))
		}
		t.row("created", orDash(stamp(j.CreatedAt)))
		if j.FinishedAt != nil {
			t.row("duration", duration(j.StartedAt, j.FinishedAt, now))
		}
		t.flush()
		if len(j.Steps) == 0 {
			return
		}
		fmt.Fprintln(a.stdout)
		s := a.newTable("STEP", "STATUS", "EXIT", "REASON", "DURATION")
		for _, st := range j.Steps {
			exit := "-"
			if st.ExitCode != nil {
				exit = fmt.Sprint(*st.ExitCode)
			}
			s.row(st.Name, st.Status, exit, orDash(strings.TrimSpace(st.Reason+" "+st.Message)), duration(st.StartedAt, st.FinishedAt, now))
		}
		s.flush()
	})
}

// stamp formats a time for tables.
func stamp(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Local().Format(time.RFC3339)
}

// duration is how long something ran: until end, or until now while it runs.
func duration(start, end *time.Time, now time.Time) string {
	if start == nil {
		return "-"
	}
	if end == nil {
		return brief(now.Sub(*start)) + "+"
	}
	return end.Sub(*start).Round(time.Millisecond).String()
}

// cancelCmd: omnictl cancel ID.
func (a *app) cancelCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		return a.call(ctx, args, []string{"ID"}, func(ctx context.Context, c *client.Client) error {
			j, err := c.Cancel(ctx, args[0])
			if err != nil {
				return err
			}
			return a.printRaw(j.JSON(), func() { fmt.Fprintf(a.stdout, "job %s: %s\n", j.ID, j.Status) })
		})
	}
}

// rerunCmd: omnictl rerun ID.
func (a *app) rerunCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	key := fs.String("idempotency-key", "", "a repeat with the same key answers the first rerun instead of queueing another")
	return func(ctx context.Context, args []string) error {
		return a.call(ctx, args, []string{"ID"}, func(ctx context.Context, c *client.Client) error {
			j, err := c.Rerun(ctx, args[0], *key)
			if err != nil {
				return err
			}
			return a.printRaw(j.JSON(), func() { fmt.Fprintf(a.stdout, "job %s: %s (rerun of %s)\n", j.ID, j.Status, args[0]) })
		})
	}
}

// waitCmd: omnictl wait ID.
func (a *app) waitCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	interval := fs.Duration("interval", time.Second, "how often to ask for the job")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, "ID"); err != nil {
			return err
		}
		c, _, err := a.client()
		if err != nil {
			return err
		}
		j, err := a.waitJob(ctx, c, args[0], *interval, true)
		if err != nil {
			return err
		}
		if a.output != "" {
			if err := a.printJob(j); err != nil {
				return err
			}
		}
		return a.outcome(j)
	}
}

// waitJob asks for job id every interval until it has ended, showing its status while it
// waits (when show).
func (a *app) waitJob(ctx context.Context, c *client.Client, id string, interval time.Duration, show bool) (*client.Job, error) {
	var p *progress
	if show {
		p = newProgress(a.stderr, a.stderrTTY)
		defer p.close()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var failingSince time.Time
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		j, err := c.Job(rctx, id)
		cancel()
		switch {
		case err == nil:
			failingSince = time.Time{}
			if j.Terminal() {
				return j, nil
			}
			if p != nil {
				p.set(jobProgress(j, time.Now()))
			}
		case client.StatusOf(err)/100 == 4 && client.StatusOf(err) != 429 || ctx.Err() != nil:
			return nil, err
		default: // the network or a server that is briefly unable: keep asking for a while
			if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) > 5*time.Minute {
				return nil, err
			}
			if p != nil {
				p.set(fmt.Sprintf("job %s: %s (retrying)", id, oneLine(err.Error())))
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// jobProgress describes a job that has not ended, for the progress line.
func jobProgress(j *client.Job, now time.Time) string {
	msg := fmt.Sprintf("job %s: %s", j.ID, j.Status)
	switch {
	case j.Status == "queued" && j.Queue != nil:
		msg += fmt.Sprintf(" (position %d: %s)", j.Queue.Position, j.Queue.Reason)
	case j.Status == "running":
		for _, s := range j.Steps {
			if s.Status == "running" {
				msg += fmt.Sprintf(" (step %s, %s)", s.Name, duration(s.StartedAt, nil, now))
				break
			}
		}
	}
	return msg
}

// outcome turns an ended job into the exit status, with a line on stderr saying how it ended
// (naming the failed step).
func (a *app) outcome(j *client.Job) error {
	switch j.Status {
	case "succeeded":
		fmt.Fprintf(a.stderr, "job %s succeeded\n", j.ID)
		return nil
	case "failed":
		msg := fmt.Sprintf("job %s failed", j.ID)
		if s := j.FailedStep(); s != nil {
			msg += fmt.Sprintf(" in step %s", s.Name)
		}
		if d := strings.TrimSpace(j.Reason + ": " + j.Message); d != ":" {
			msg += " (" + strings.Trim(d, ": ") + ")"
		}
		return &exitStatus{code: exitFailed, err: errors.New(msg)}
	default:
		return &exitStatus{code: exitCancelled, err: fmt.Errorf("job %s %s (%s)", j.ID, j.Status, strings.Trim(j.Reason+": "+j.Message, ": "))}
	}
}

// queueCmd: omnictl queue.
func (a *app) queueCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	arch := fs.String("arch", "", "only jobs of this architecture (x86_64, aarch64)")
	service := fs.String("service", "", "only jobs of this service")
	class := fs.String("class", "", "only jobs of this priority class")
	return func(ctx context.Context, args []string) error {
		return a.call(ctx, args, nil, func(ctx context.Context, c *client.Client) error {
			v, err := c.Queue(ctx, *arch, *service, *class)
			if err != nil {
				return err
			}
			return a.printRaw(v.JSON(), func() {
				now := time.Now()
				if len(v.Waiting) == 0 {
					fmt.Fprintln(a.stderr, "no job waits")
				} else {
					t := a.newTable("POS", "ID", "SERVICE", "TASK", "ARCH", "CLASS", "SLOTS", "WAITING", "REASON")
					for _, w := range v.Waiting {
						t.row(fmt.Sprint(w.Position), w.ID, w.Service, w.Task, w.Arch, w.Class, fmt.Sprint(w.Slots), age(w.CreatedAt, now), w.Reason)
					}
					t.flush()
				}
				if v.Hidden > 0 {
					fmt.Fprintf(a.stderr, "%d more of other services\n", v.Hidden)
				}
				fmt.Fprintln(a.stdout)
				t := a.newTable("INSTANCE", "ARCH", "CAPACITY", "IN USE", "FREE")
				for _, in := range v.Instances {
					capacity, free := fmt.Sprint(in.Capacity), fmt.Sprint(in.Free)
					if in.Unlimited {
						capacity, free = "unlimited", "unlimited"
					}
					t.row(in.Name, in.Arch, capacity, fmt.Sprint(in.InUse), free)
				}
				t.flush()
			})
		})
	}
}
