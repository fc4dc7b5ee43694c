package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sync"

	"github.com/omnibuildplatform/omni-orchestrator/cmd/omnictl/internal/client"
)

// logsCmd: omnictl logs ID [--step S | --all-steps] [-f].
func (a *app) logsCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	step := fs.String("step", "", "the step (default: the job's first step)")
	all := fs.Bool("all-steps", false, "every step in order, each line prefixed with [step]")
	follow := fs.Bool("f", false, "follow: print lines as they are written, until the job has ended and the log is archived; a dropped connection resumes where it stopped")
	fs.BoolVar(follow, "follow", false, "same as -f")
	attempt := fs.Int("attempt", 0, "the log of this attempt of the job (default: the current one; earlier attempts were lost to the infrastructure and retried)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, "ID"); err != nil {
			return err
		}
		if *all && *step != "" {
			return usageError("logs: --step and --all-steps exclude each other")
		}
		c, _, err := a.client()
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		j, err := c.Job(rctx, args[0])
		cancel()
		if err != nil {
			return err
		}
		steps := []string{*step}
		if *step == "" && len(j.Steps) > 0 {
			steps = []string{j.Steps[0].Name}
		}
		if *all {
			steps = stepNames(j)
		}
		if *follow {
			return a.followSteps(ctx, c, j, *attempt, steps, *all)
		}
		for _, s := range steps {
			if err := a.printPages(ctx, c, j.ID, *attempt, s, *all); err != nil {
				return err
			}
		}
		return nil
	}
}

// printPages prints the log of step as it is now: page after page up to its end, or up to
// what the running container has written so far.
func (a *app) printPages(ctx context.Context, c *client.Client, id string, attempt int, step string, prefix bool) error {
	w := newLineWriter(a.stdout, prefix)
	after := ""
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		p, err := c.LogPage(rctx, id, attempt, step, after, 0)
		cancel()
		if err != nil {
			return err
		}
		if err := w.write(p.Step, p.Lines); err != nil {
			return err
		}
		if p.Done() || len(p.Lines) == 0 {
			if p.Incomplete {
				fmt.Fprintf(a.stderr, "omnictl: the log of step %s is incomplete: %s\n", p.Step, p.Reason)
			}
			return nil
		}
		after = p.Cursor
	}
}

// lineWriter prints log lines, with a [step] prefix when asked.
type lineWriter struct {
	w      io.Writer
	prefix bool
}

func newLineWriter(w io.Writer, prefix bool) *lineWriter { return &lineWriter{w: w, prefix: prefix} }

func (lw *lineWriter) write(step string, lines []client.LogLine) error {
	for _, l := range lines {
		var err error
		if lw.prefix {
			_, err = fmt.Fprintf(lw.w, "[%s] %s\n", step, l.Text)
		} else {
			_, err = fmt.Fprintln(lw.w, l.Text)
		}
		if err != nil {
			return fmt.Errorf("write the log: %w", err)
		}
	}
	return nil
}

// followSteps follows the logs of steps (of job j) to their ends and prints them step by step:
// all streams run at once, and a step's lines are held back until the steps before it are done
// (their container ended, or their log ended), so that the output reads in the order the steps
// ran while each step still shows live.
func (a *app) followSteps(ctx context.Context, c *client.Client, j *client.Job, attempt int, steps []string, prefix bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := &orderedSteps{w: newLineWriter(a.stdout, prefix), steps: steps, bufs: make([]stepBuffer, len(steps))}
	errs := make(chan error, len(steps))
	var wg sync.WaitGroup
	for i, s := range steps {
		f := &client.Follower{
			Client: c, ID: j.ID, Step: s, Attempt: attempt,
			Lines: func(_ string, lines []client.LogLine) error { return o.lines(i, lines) },
			State: func(_, state string) { o.state(i, state) },
			Reconnected: func(step string, err error) {
				if err != nil {
					fmt.Fprintf(a.stderr, "omnictl: %s; resuming\n", oneLine(err.Error()))
				}
			},
		}
		wg.Go(func() {
			end, err := f.Follow(ctx)
			if err != nil {
				errs <- err // before cancel: the others' context errors come after it
				cancel()
				return
			}
			if end.Incomplete {
				fmt.Fprintf(a.stderr, "omnictl: the log of step %s is incomplete: %s\n", s, end.Reason)
			}
			errs <- o.end(i)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// orderedSteps prints the lines of several steps' streams in step order.
type orderedSteps struct {
	w     *lineWriter
	steps []string

	mu      sync.Mutex
	bufs    []stepBuffer
	current int // the step printed live; the ones before it are done
}

// stepBuffer holds a step's lines until it is its turn.
type stepBuffer struct {
	lines []client.LogLine
	// live: the stream has read the running container; done: the container ended or the log
	// ended, so the next step may print.
	live, done bool
}

func (o *orderedSteps) lines(i int, lines []client.LogLine) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if i <= o.current {
		// Its turn (or a late line of a step that ended: printed at once, never dropped).
		return o.w.write(o.steps[i], lines)
	}
	o.bufs[i].lines = append(o.bufs[i].lines, lines...)
	return nil
}

func (o *orderedSteps) state(i int, state string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case state == "live":
		o.bufs[i].live = true
	case state == "waiting" && o.bufs[i].live:
		// The container ended; the stream now waits for the archive.
		o.bufs[i].done = true
		_ = o.advance()
	}
}

func (o *orderedSteps) end(i int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bufs[i].done = true
	return o.advance()
}

// advance moves the turn past done steps, printing what the next steps held (o.mu held).
func (o *orderedSteps) advance() error {
	for o.current < len(o.steps) && o.bufs[o.current].done {
		o.current++
		if o.current < len(o.steps) {
			b := &o.bufs[o.current]
			if err := o.w.write(o.steps[o.current], b.lines); err != nil {
				return err
			}
			b.lines = nil
		}
	}
	return nil
}

// downloadCmd: omnictl download ID STEP.
func (a *app) downloadCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	attempt := fs.Int("attempt", 0, "the log of this attempt of the job (default: the current one)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, "ID", "STEP"); err != nil {
			return err
		}
		c, _, err := a.client()
		if err != nil {
			return err
		}
		return c.Download(ctx, args[0], *attempt, args[1], a.stdout)
	}
}
